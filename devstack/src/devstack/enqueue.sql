-- name: add_job
SELECT id FROM {schema}.add_job(
    db_id := %(database_id)s::uuid,
    identifier := %(task)s,
    payload := %(payload)s::json,
    max_attempts := %(max_attempts)s
);

-- name: job_status
SELECT status, attempts, max_attempts, last_error, result
FROM {schema}.job_status(%(job_id)s);
