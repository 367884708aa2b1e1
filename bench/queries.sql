-- name: history_count
SELECT count(*) FROM app_jobs.job_history;

-- name: drain_seconds
-- First claim to last completion, by the database's clock.
SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM app_jobs.job_history;

-- name: clear
TRUNCATE app_jobs.job_history, app_jobs.jobs;

-- name: backend_pids
-- The server processes serving this database (client backends, autovacuum), but this one.
SELECT pid FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid();

-- name: vacuum
VACUUM (ANALYZE);

-- name: ours_add_jobs
-- The batch call, measured as graphile_add_jobs is: the JSON array in, the rows counted.
SELECT count(*) FROM app_jobs.add_jobs(%(jobs)s::json);

-- name: ours_add_job
-- One job, measured as graphile_add_job is.
SELECT (app_jobs.add_job(%(db_id)s::uuid, %(task)s::text, '{}'::json)).id;

-- name: ours_pending
SELECT count(*) FROM app_jobs.jobs;

-- name: graphile_pending
SELECT count(*) FROM graphile_worker._private_jobs;

-- name: graphile_clear
TRUNCATE graphile_worker._private_jobs, graphile_worker._private_job_queues;

-- name: graphile_add_jobs
-- The same JSON array of {"identifier", "payload"} objects that our add_jobs takes.
SELECT count(*)
  FROM graphile_worker.add_jobs(ARRAY(
         SELECT ROW(e ->> 'identifier', e -> 'payload', NULL, NULL, NULL, NULL, NULL, NULL)
                  ::graphile_worker.job_spec
           FROM json_array_elements(%(jobs)s::json) AS e));

-- name: graphile_add_job
SELECT (graphile_worker.add_job(%(task)s::text, '{}'::json)).id;

-- name: pgqueuer_pending
SELECT count(*) FROM pgqueuer;

-- name: pgqueuer_clear
TRUNCATE pgqueuer, pgqueuer_log;
