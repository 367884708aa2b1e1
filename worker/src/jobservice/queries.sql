-- Named queries of the job service. Each block starts with "-- name: <name>".
-- {schema} is replaced by the quoted schema identifier (psycopg.sql.Identifier); parameters
-- use psycopg's %(name)s placeholders. No other text is substituted.

-- name: claim_jobs
-- Up to max_jobs runnable jobs, locked by worker_id (payload as raw JSON text); the columns
-- the worker reads only (claim_jobs_brief, 0007: claim_jobs's rules without whole rows).
SELECT id, task_identifier, payload::text, database_id::text, actor_id::text,
       attempts, max_attempts
  FROM {schema}.claim_jobs_brief(%(worker_id)s::text, %(tasks)s::text[],
                                 make_interval(secs => %(job_expiry)s), %(max_jobs)s::int);

-- name: runnable_tasks
-- The tasks that have runnable jobs (used to leave out a task at its concurrency limit).
SELECT DISTINCT task_identifier FROM {schema}.jobs
 WHERE locked_at IS NULL AND run_at <= now();

-- name: adopt_jobs
-- Jobs locked by this worker that it does not know about (a claim whose reply was lost).
-- (locked_at IS NOT NULL: a claimed job's; it lets jobs_locked_at_idx serve the lookup.)
SELECT id, task_identifier, payload::text, database_id::text, actor_id::text,
       attempts, max_attempts
  FROM {schema}.jobs
 WHERE locked_at IS NOT NULL
   AND locked_by = %(worker_id)s
   AND locked_until IS NULL
   AND NOT (id = ANY(%(known)s::bigint[]));

-- name: complete_jobs
SELECT * FROM {schema}.complete_jobs(%(worker_id)s::text, %(job_ids)s::bigint[],
                                     %(results)s::json[]);

-- name: fail_jobs
SELECT job_id, outcome
  FROM {schema}.fail_jobs(%(worker_id)s::text, %(job_ids)s::bigint[],
                          %(messages)s::text[], %(retryable)s::boolean[]);

-- name: vacuum_jobs
-- Removes the dead index entries that claims and completions leave (see store_postgres.py).
-- INDEX_CLEANUP ON: PostgreSQL would otherwise skip the indexes when few heap pages changed,
-- and the dead entries at the head of jobs_claim_idx are what this is for.
VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) {schema}.jobs;

-- name: release_unreachable_jobs
-- Jobs whose function could not be reached: unlocked, attempt given back, runnable after delay.
SELECT * FROM {schema}.release_unreachable_jobs(%(worker_id)s::text, %(job_ids)s::bigint[],
                                                %(delays)s::float8[], %(messages)s::text[]);

-- name: job_holders
-- Who holds these jobs now, or how they finished (for outcomes the database refused).
SELECT u.id, j.locked_by, j.last_error, h.status, h.worker_id
  FROM unnest(%(job_ids)s::bigint[]) AS u(id)
  LEFT JOIN {schema}.jobs j ON j.id = u.id
  LEFT JOIN {schema}.job_history h ON h.job_id = u.id;

-- name: await_callback
SELECT {schema}.await_callback(%(worker_id)s::text, %(job_id)s::bigint,
                               now() + make_interval(secs => %(deadline)s));

-- name: expire_callback_deadlines
SELECT job_id, outcome FROM {schema}.expire_callback_deadlines();

-- name: report_progress
SELECT {schema}.report_progress(%(worker_id)s::text, %(job_id)s::bigint,
                                %(progress)s::int, %(message)s::text);

-- name: worker_heartbeat
SELECT {schema}.worker_heartbeat(%(worker_id)s::text, %(info)s::json);

-- name: rescue_dead_workers
-- heard_for: how long this worker has been in continuous contact with the database (0003).
SELECT job_id, worker_id, outcome
  FROM {schema}.rescue_dead_workers(make_interval(secs => %(dead_after)s),
                                    make_interval(secs => %(heard_for)s));

-- name: unregister_worker
SELECT {schema}.unregister_worker(%(worker_id)s::text);

-- name: release_jobs
SELECT {schema}.release_jobs(%(worker_id)s::text);

-- name: notify_probe
SELECT pg_notify('jobs:probe', %(token)s::text);

-- name: job_lock
-- Who holds a job (for the callback server's 409), and its last error (idempotent retries).
SELECT locked_by, last_error FROM {schema}.jobs WHERE id = %(job_id)s::bigint;

-- name: job_finished
SELECT worker_id, status, last_error FROM {schema}.job_history
 WHERE job_id = %(job_id)s::bigint;

-- name: queue_stats
-- Per task: runnable jobs waiting, running jobs, and the age of the oldest runnable job.
SELECT task_identifier,
       count(*) FILTER (WHERE locked_at IS NULL AND run_at <= now()) AS queued,
       count(*) FILTER (WHERE locked_at IS NOT NULL) AS running,
       coalesce(extract(epoch FROM now() - min(run_at)
                        FILTER (WHERE locked_at IS NULL AND run_at <= now())), 0)::float8 AS lag
  FROM {schema}.jobs
 GROUP BY task_identifier;

-- name: ping
SELECT 1;

-- name: listen
-- New-job and new-schedule notifications (the worker and the scheduler share one LISTEN
-- connection), and this service's own liveness probe of the notification path.
LISTEN "jobs:insert"; LISTEN "scheduled_jobs:insert"; LISTEN "jobs:probe";
