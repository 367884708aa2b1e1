-- Named queries of jobfn.client. `{schema}` is filled in with psycopg.sql.Identifier.

-- name: add_jobs
-- The columns are jobfn.client.Job's fields, in order; the payload as text (parsed in Python).
SELECT id, task_identifier, database_id, payload::text, queue_name, priority, run_at, attempts,
       max_attempts, key, actor_id, created_at
FROM {schema}.add_jobs(%(jobs)s::json);

-- name: add_job
-- One job (no actor_id: add_job takes it from the claims), the columns of add_jobs above.
SELECT id, task_identifier, database_id, payload::text, queue_name, priority, run_at, attempts,
       max_attempts, key, actor_id, created_at
FROM {schema}.add_job(%(db_id)s::uuid, %(identifier)s::text, %(payload)s::json,
                      %(job_key)s::text, %(queue_name)s::text, %(run_at)s::timestamptz,
                      %(max_attempts)s::integer, %(priority)s::integer);

-- name: job_status
SELECT job_id, status, task_identifier, attempts, max_attempts, last_error, result, progress,
       progress_message, run_at, locked_by, created_at, finished_at
FROM {schema}.job_status(%(job_id)s::bigint);
