// A job function written with the reference wrapper @constructive-io/knative-job-fn.
//
// POST / with {"mode": "ok", ...} answers 200 {"complete": true, "echo": <payload>};
// {"mode": "accepted"} answers 202 {"accepted": true} (the wrapper still sends its success
// callback right after the response); {"mode": "fail", "message": "..."} throws an Error with
// that message (the wrapper then sends an error callback and answers 200 with X-Job-Error: true).
// Every request is printed as one line `INTEROP-RECEIVED <json>` (headers and body), and
// `INTEROP-LISTENING <port>` once the server listens (PORT, default 0 = any free port).
'use strict';

const { createJobApp } = require('@constructive-io/knative-job-fn');

const app = createJobApp();

app.post('/', async (req, res) => {
  const seen = { headers: req.headers, body: req.body };
  process.stdout.write(`INTEROP-RECEIVED ${JSON.stringify(seen)}\n`);
  const payload = req.body || {};
  if (payload.mode === 'fail') {
    throw new Error(String(payload.message || 'failure requested'));
  }
  if (payload.mode === 'accepted') {
    res.status(202).json({ accepted: true });
    return;
  }
  res.status(200).json({ complete: true, echo: payload });
});

const port = Number(process.env.PORT || 0);
const server = app.listen(port, '127.0.0.1', () => {
  process.stdout.write(`INTEROP-LISTENING ${server.address().port}\n`);
});
