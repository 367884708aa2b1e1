-- 0006_retry_policy: the delay before a failed job's next attempt, as its own functions, with
-- a per-task override an operator sets with one SQL statement.
--
-- * retry_delay(attempts): the default policy, unchanged from 0001: exp(least(attempts, 10))
--   seconds after the attempt that failed (2.7 s after the first, 7.4 s, 20 s, ... up to
--   exp(10) s ≈ 6 h 7 min from the tenth on).
-- * task_retry_policies: one row per task whose policy differs: the delay after its first
--   failed attempt, multiplied by `factor` after each further one, never more than `max_delay`.
-- * retry_delay(task_identifier, attempts): the task's row when it has one, else the default.
-- * fail_locked_jobs (behind fail_job, fail_jobs, expire_callback_deadlines and the rescue of
--   dead workers) now takes a retried job's delay from retry_delay(task_identifier, attempts).
--   While task_retry_policies is empty it reads the table once per statement, not once per
--   job, and applies the default.

-- ---------------------------------------------------------------------------------------------
-- The policies
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.retry_delay(attempts integer)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT exp(least(attempts, 10)::double precision) * interval '1 second'
$$;

COMMENT ON FUNCTION app_jobs.retry_delay(integer) IS
  'Default retry policy: the delay before the next attempt of a job that failed its attempt '
  'number `attempts` (counted from 1): exp(least(attempts, 10)) seconds.';

-- initial_delay * factor ^ (attempts - 1), at most max_delay. Computed as
-- initial_delay * exp(least((attempts - 1) * ln(factor), ln(max_delay / initial_delay))) so
-- that no attempt count overflows; intervals keep whole microseconds.
CREATE OR REPLACE FUNCTION app_jobs.exponential_delay(
  initial_delay interval,
  factor double precision,
  max_delay interval,
  attempts integer
)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
           WHEN initial_delay <= interval '0' THEN interval '0'
           ELSE least(max_delay,
                      initial_delay
                      * exp(least(greatest(attempts - 1, 0) * ln(factor),
                                  ln(extract(epoch FROM max_delay)::double precision
                                     / extract(epoch FROM initial_delay)::double precision))))
         END
$$;

COMMENT ON FUNCTION app_jobs.exponential_delay(interval, double precision, interval, integer) IS
  'initial_delay * factor ^ (attempts - 1), at most max_delay (the shape of a task_retry_policies row).';

CREATE TABLE IF NOT EXISTS app_jobs.task_retry_policies (
  task_identifier text PRIMARY KEY,
  initial_delay interval NOT NULL,
  factor double precision NOT NULL DEFAULT 2,
  max_delay interval NOT NULL,
  CONSTRAINT task_retry_policies_initial_delay_check
    CHECK (initial_delay >= interval '0'),
  CONSTRAINT task_retry_policies_factor_check
    CHECK (factor >= 1 AND factor <= 1000),
  CONSTRAINT task_retry_policies_max_delay_check
    CHECK (max_delay >= initial_delay AND max_delay <= interval '1 year')
);

COMMENT ON TABLE app_jobs.task_retry_policies IS
  'Per-task retry policy: after failed attempt n (from 1) the job waits '
  'least(max_delay, initial_delay * factor ^ (n - 1)). Tasks without a row use retry_delay(attempts).';

CREATE OR REPLACE FUNCTION app_jobs.retry_delay(task_identifier text, attempts integer)
RETURNS interval
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT coalesce(
    (SELECT app_jobs.exponential_delay(p.initial_delay, p.factor, p.max_delay, attempts)
       FROM app_jobs.task_retry_policies p
      WHERE p.task_identifier = retry_delay.task_identifier),
    app_jobs.retry_delay(attempts))
$$;

COMMENT ON FUNCTION app_jobs.retry_delay(text, integer) IS
  'Retry policy of a task: its task_retry_policies row when it has one, else retry_delay(attempts).';

-- ---------------------------------------------------------------------------------------------
-- The failing path (whole definition from 0001; only the run_at of retried jobs changed)
-- ---------------------------------------------------------------------------------------------

-- Failing: per job, retry with backoff, or (not retryable / out of attempts) → history failed.
-- check_worker: only jobs locked by worker_id (the public functions always check).
-- The delay: retry_delay(task_identifier, attempts); while no task has a policy of its own the
-- EXISTS below is evaluated once per statement and every job takes the default directly.
CREATE OR REPLACE FUNCTION app_jobs.fail_locked_jobs(
  worker_id text,
  job_ids bigint[],
  error_messages text[],
  retryable boolean[],
  check_worker boolean DEFAULT true
)
RETURNS TABLE (outcome text, job app_jobs.jobs)
LANGUAGE sql VOLATILE
AS $$
  WITH input AS (
    SELECT DISTINCT ON (u.id) u.id,
           coalesce(u.message, 'unknown error') AS message,
           coalesce(u.retry, true) AS retry
      FROM unnest(job_ids, error_messages, retryable) AS u(id, message, retry)
     WHERE u.id IS NOT NULL
     ORDER BY u.id
  ),
  target AS MATERIALIZED (
    SELECT j.id, j.queue_name, j.locked_by, i.message,
           (i.retry AND j.attempts < j.max_attempts) AS retry
      FROM app_jobs.jobs j
      JOIN input i ON i.id = j.id
     WHERE j.locked_by = worker_id OR NOT check_worker
       FOR UPDATE OF j
  ),
  retried AS (
    UPDATE app_jobs.jobs j
       SET last_error = t.message,
           run_at = greatest(now(), j.run_at)
                    + CASE WHEN EXISTS (SELECT 1 FROM app_jobs.task_retry_policies)
                           THEN app_jobs.retry_delay(j.task_identifier, j.attempts)
                           ELSE app_jobs.retry_delay(j.attempts)
                      END,
           locked_by = NULL,
           locked_at = NULL,
           locked_until = NULL
      FROM target t
     WHERE j.id = t.id AND t.retry
    RETURNING j AS job
  ),
  failed AS (
    DELETE FROM app_jobs.jobs j
     USING target t
     WHERE j.id = t.id AND NOT t.retry
    RETURNING json_populate_record(j, json_build_object('last_error', t.message)) AS job
  ),
  unlocked AS (
    UPDATE app_jobs.job_queues q
       SET locked_at = NULL, locked_by = NULL
      FROM target t
     WHERE q.queue_name = t.queue_name
       AND q.locked_by = t.locked_by
  ),
  history AS (
    INSERT INTO app_jobs.job_history (
      job_id, database_id, actor_id, task_identifier, queue_name, payload, priority, key, status,
      attempts, max_attempts, result, last_error, worker_id, created_at, run_at, started_at,
      finished_at)
    SELECT (f.job).id, (f.job).database_id, (f.job).actor_id, (f.job).task_identifier,
           (f.job).queue_name, (f.job).payload, (f.job).priority, (f.job).key, 'failed',
           (f.job).attempts, (f.job).max_attempts, NULL, (f.job).last_error, (f.job).locked_by,
           (f.job).created_at, (f.job).run_at, (f.job).locked_at, now()
      FROM failed f
    ON CONFLICT (job_id) DO UPDATE
      SET status = EXCLUDED.status, attempts = EXCLUDED.attempts, result = EXCLUDED.result,
          last_error = EXCLUDED.last_error, worker_id = EXCLUDED.worker_id,
          started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at
  )
  SELECT 'retry'::text, r.job FROM retried r
  UNION ALL
  SELECT 'failed'::text, f.job FROM failed f
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges: the job service (owner, administrator) reads and sets policies; not PUBLIC.
-- ---------------------------------------------------------------------------------------------

REVOKE EXECUTE ON FUNCTION
  app_jobs.retry_delay(integer),
  app_jobs.retry_delay(text, integer),
  app_jobs.exponential_delay(interval, double precision, interval, integer)
  FROM PUBLIC;

DO $grants$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'administrator') THEN
    GRANT EXECUTE ON FUNCTION
      app_jobs.retry_delay(integer),
      app_jobs.retry_delay(text, integer),
      app_jobs.exponential_delay(interval, double precision, interval, integer)
      TO administrator;
    GRANT SELECT, INSERT, UPDATE, DELETE ON app_jobs.task_retry_policies TO administrator;
  ELSE
    RAISE NOTICE 'jobs migrate: role administrator does not exist; skipping its grants';
  END IF;
END;
$grants$;
