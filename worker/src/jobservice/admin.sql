-- The operator commands of `jobs` (add, status, list, retry, cancel, prune, stats).
-- {schema} is filled with the quoted JOBS_SCHEMA.

-- name: add_job
SELECT id FROM {schema}.add_job(
    db_id := %(db_id)s::uuid,
    identifier := %(task)s,
    payload := %(payload)s::json,
    job_key := %(job_key)s,
    queue_name := %(queue_name)s,
    run_at := coalesce(%(run_at)s::timestamptz, now()),
    max_attempts := coalesce(%(max_attempts)s::int, 25),
    priority := coalesce(%(priority)s::int, 0)
);

-- name: job_status
SELECT * FROM {schema}.job_status(%(job_id)s);

-- name: list_jobs
SELECT job_id, task_identifier, status, attempts, max_attempts, run_at, last_error
FROM (
    SELECT id AS job_id, task_identifier,
           CASE WHEN locked_at IS NULL THEN 'queued' ELSE 'running' END AS status,
           attempts, max_attempts, run_at, last_error
    FROM {schema}.jobs
    UNION ALL
    SELECT job_id, task_identifier, status, attempts, max_attempts, run_at, last_error
    FROM {schema}.job_history
) AS every_job
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(task)s::text IS NULL OR task_identifier = %(task)s::text)
ORDER BY job_id DESC
LIMIT %(limit)s;

-- name: retry_job
SELECT id FROM {schema}.retry_failed_job(%(job_id)s);

-- name: cancel_jobs
SELECT id FROM {schema}.permanently_fail_jobs(%(job_ids)s::bigint[], %(message)s);

-- name: prune_history
SELECT {schema}.prune_job_history(%(older_than)s::interval) AS pruned;

-- name: stats
WITH queue AS (
    SELECT task_identifier,
           count(*) FILTER (WHERE locked_at IS NULL) AS queued,
           count(*) FILTER (WHERE locked_at IS NOT NULL) AS running,
           extract(epoch FROM now() - min(run_at) FILTER (
               WHERE locked_at IS NULL AND run_at <= now()))::float8 AS lag_seconds
    FROM {schema}.jobs
    GROUP BY task_identifier
), finished AS (
    SELECT task_identifier,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'failed') AS failed
    FROM {schema}.job_history
    WHERE finished_at > now() - interval '24 hours'
    GROUP BY task_identifier
)
SELECT task_identifier AS task,
       coalesce(queued, 0) AS queued, coalesce(running, 0) AS running,
       coalesce(completed, 0) AS completed_24h, coalesce(failed, 0) AS failed_24h,
       lag_seconds
FROM queue FULL JOIN finished USING (task_identifier)
ORDER BY task_identifier;
