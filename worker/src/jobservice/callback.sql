-- Named queries of the callback server. Each block starts with "-- name: <name>".
-- {schema} is replaced by the quoted schema identifier (psycopg.sql.Identifier); parameters
-- use psycopg's %(name)s placeholders. No other text is substituted.
--
-- A callback settles a job only for the attempt it was issued for: each statement locks the
-- job row (FOR UPDATE) where it is held by the callback's worker, at the callback's attempt
-- (when the callback names one) and for the callback's tenant (when it names one), and hands
-- only that row to the settling function, all in one statement (one transaction): a re-claim
-- for the next attempt waits for the lock and cannot be settled by the late callback.
-- complete_attempt and fail_attempt also return the job's task (the outcome metrics count it).

-- name: complete_attempt
WITH held AS MATERIALIZED (
  SELECT j.id, j.task_identifier
    FROM {schema}.jobs j
   WHERE j.id = %(job_id)s::bigint
     AND j.locked_by = %(worker_id)s::text
     AND (%(attempt)s::int IS NULL OR j.attempts = %(attempt)s::int)
     AND (%(database_id)s::text IS NULL OR j.database_id::text = %(database_id)s::text)
     FOR UPDATE OF j
)
SELECT c.job_id, held.task_identifier
  FROM {schema}.complete_jobs(%(worker_id)s::text, ARRAY(SELECT id FROM held),
                              ARRAY[%(result)s::json]) AS c(job_id)
  JOIN held ON held.id = c.job_id;

-- name: fail_attempt
WITH held AS MATERIALIZED (
  SELECT j.id, j.task_identifier
    FROM {schema}.jobs j
   WHERE j.id = %(job_id)s::bigint
     AND j.locked_by = %(worker_id)s::text
     AND (%(attempt)s::int IS NULL OR j.attempts = %(attempt)s::int)
     AND (%(database_id)s::text IS NULL OR j.database_id::text = %(database_id)s::text)
     FOR UPDATE OF j
)
SELECT f.job_id, f.outcome, held.task_identifier
  FROM {schema}.fail_jobs(%(worker_id)s::text, ARRAY(SELECT id FROM held),
                          ARRAY[%(message)s::text], ARRAY[%(retryable)s::boolean]) AS f
  JOIN held ON held.id = f.job_id;

-- name: progress_attempt
-- Through report_progress (0007), which sends the job's live event (progress is 0..100 here).
WITH held AS MATERIALIZED (
  SELECT j.id
    FROM {schema}.jobs j
   WHERE j.id = %(job_id)s::bigint
     AND j.locked_by = %(worker_id)s::text
     AND (%(attempt)s::int IS NULL OR j.attempts = %(attempt)s::int)
     AND (%(database_id)s::text IS NULL OR j.database_id::text = %(database_id)s::text)
     FOR UPDATE OF j
)
SELECT held.id
  FROM held
 WHERE {schema}.report_progress(%(worker_id)s::text, held.id, %(progress)s::int,
                                %(message)s::text);

-- name: job_state
-- Why a callback changed nothing: the job's holder, attempt and last error (never sent back).
SELECT locked_by, attempts, last_error, database_id::text
  FROM {schema}.jobs
 WHERE id = %(job_id)s::bigint;

-- name: job_finished
SELECT worker_id, status, attempts, last_error, database_id::text
  FROM {schema}.job_history
 WHERE job_id = %(job_id)s::bigint;
