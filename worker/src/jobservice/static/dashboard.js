// The dashboard's live part: job events over SSE, figures re-read at most once a second.
"use strict";
(function () {
  var state = JSON.parse(document.getElementById("initial").textContent);
  var live = document.getElementById("live");
  var refreshTimer = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }
  function td(text) { return el("td", { text: text === null || text === undefined ? "-" : String(text) }); }

  function relative(iso) {
    if (!iso) { return "-"; }
    var s = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
    var a = Math.abs(s);
    var t = a < 60 ? a + "s" : a < 3600 ? Math.floor(a / 60) + "m" : a < 86400 ? Math.floor(a / 3600) + "h" : Math.floor(a / 86400) + "d";
    return a < 1 ? "now" : s > 0 ? "in " + t : t + " ago";
  }
  function secs(v) {
    if (v === null || v === undefined) { return "-"; }
    return v < 1 ? Math.round(v * 1000) + " ms" : v < 60 ? v.toFixed(1) + " s" : Math.round(v / 60) + "m";
  }

  function fill(id, rows, render, empty, columns) {
    var body = document.querySelector("#" + id + " tbody");
    body.textContent = "";
    if (!rows.length) {
      body.appendChild(el("tr", { "class": "empty" }, [el("td", { colspan: String(columns), text: empty })]));
      return;
    }
    rows.forEach(function (r) { body.appendChild(render(r)); });
  }

  function runningRow(j) {
    var p = j.progress || 0;
    var bar = el("progress", { max: "100", value: String(p), "data-job-progress": String(j.id) });
    var cell = el("td", {}, [bar, document.createTextNode(" "), el("span", { "class": "pct", text: p + "%" }),
      document.createTextNode(" "), el("span", { "class": "msg", text: j.progress_message || "" })]);
    return el("tr", { "data-job": String(j.id), "data-status": "running" },
      [td(j.id), td(j.task), td(j.attempts + "/" + j.max_attempts), cell, td(relative(j.started_at))]);
  }
  function failedRow(j) {
    var button = el("button", { type: "button", "data-retry": String(j.id), text: "Retry" });
    var err = el("td", { "class": "error", text: j.last_error || "" });
    return el("tr", { "data-job": String(j.id), "data-status": "failed" },
      [td(j.id), td(j.task), td(j.attempts + "/" + j.max_attempts), err, td(relative(j.finished_at)), el("td", {}, [button])]);
  }
  function recentRow(j) {
    var status = el("td", {}, [el("span", { "class": "status " + j.status, text: j.status })]);
    return el("tr", { "data-job": String(j.id), "data-status": j.status },
      [td(j.id), td(j.task), status, td(j.attempts + "/" + j.max_attempts), td(j.progress), td(relative(j.created_at))]);
  }
  function taskRow(t) {
    return el("tr", {}, [td(t.task), td(t.queued), td(t.scheduled), td(t.retrying), td(t.running),
      td(t.completed_1h), td(t.failed_1h), td(secs(t.p50_seconds)), td(secs(t.p95_seconds))]);
  }
  function scheduleRow(s) {
    var info = s.schedule_info && s.schedule_info.rule ? s.schedule_info.rule : JSON.stringify(s.schedule_info);
    return el("tr", { "data-schedule": String(s.id) }, [td(s.id), td(s.task), el("td", {}, [el("code", { text: info })]),
      td(s.state), td(relative(s.next_run_at)), td(relative(s.last_scheduled))]);
  }

  function render() {
    Object.keys(state.counts).forEach(function (k) {
      var n = document.getElementById("count-" + k);
      if (n) { n.textContent = String(state.counts[k]); }
    });
    fill("running", state.running, runningRow, "nothing running", 5);
    fill("failed", state.failed, failedRow, "no failed jobs", 6);
    fill("tasks", state.tasks, taskRow, "no jobs", 9);
    fill("recent", state.recent, recentRow, "no jobs", 6);
    fill("schedules", state.schedules, scheduleRow, "no schedules", 6);
  }

  function upsert(list, job, keep, limit) {
    var rest = list.filter(function (j) { return j.id !== job.id; });
    if (keep) { rest.push(job); rest.sort(function (a, b) { return b.id - a.id; }); }
    return rest.slice(0, limit);
  }

  function onJob(job) {
    state.running = upsert(state.running, job, job.status === "running", 50);
    state.failed = upsert(state.failed, job, job.status === "failed", 20);
    var known = state.recent.some(function (j) { return j.id === job.id; });
    var newest = state.recent.length ? state.recent[0].id : 0;
    if (known || job.id > newest) { state.recent = upsert(state.recent, job, true, 20); }
    scheduleRender();
    scheduleRefresh();
  }

  var renderPending = false;
  function scheduleRender() {
    if (renderPending) { return; }
    renderPending = true;
    window.requestAnimationFrame(function () { renderPending = false; render(); });
  }

  function refresh() {
    refreshTimer = null;
    fetch("/api/overview", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { window.location = "/dashboard/login"; return null; }
      return r.ok ? r.json() : null;
    }).then(function (o) { if (o) { state = o; render(); } }).catch(function () {});
  }
  function scheduleRefresh() { if (refreshTimer === null) { refreshTimer = setTimeout(refresh, 1000); } }

  document.addEventListener("click", function (e) {
    var id = e.target && e.target.getAttribute && e.target.getAttribute("data-retry");
    if (!id) { return; }
    e.target.disabled = true;
    fetch("/api/jobs/" + id + "/retry", { method: "POST", credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (job) { if (job && job.id) { onJob(job); } else { e.target.disabled = false; } })
      .catch(function () { e.target.disabled = false; });
  });

  var source = new EventSource("/api/events");
  source.addEventListener("ready", function () { live.textContent = "live"; live.className = "live on"; refresh(); });
  source.addEventListener("job", function (e) { onJob(JSON.parse(e.data)); });
  source.addEventListener("refresh", function () { scheduleRefresh(); });
  source.onerror = function () { live.textContent = "reconnecting…"; live.className = "live off"; };
  setInterval(render, 15000);
})();
