-- 0004_operations: what the `jobs` command line, the HTTP API and the dashboard need.
--
-- * app_jobs.job_states (every job, queued or finished) and app_jobs.active_job_states (the
--   queue only), each with its derived status.
-- * A cancelled job is told apart from a failed one: job_history.status may be 'cancelled'.
-- * cancel_jobs(job_ids, message): queued (not running) jobs → history as cancelled.
-- * retry_jobs(job_ids): failed or cancelled jobs → back into jobs (same id), attempts 0, now.
-- * Live events: one NOTIFY "jobs:events" per statement that inserts, updates or deletes jobs
--   (statement-level triggers with transition tables, never one per row). The payload is
--   '<I|U|D>:<id>,<id>,...' with at most 200 ids, or '<I|U|D>:*' when more rows changed.
--   The job service LISTENs and pushes the new states to its Server-Sent Events subscribers.

-- ---------------------------------------------------------------------------------------------
-- History status: completed, failed or cancelled
-- ---------------------------------------------------------------------------------------------

ALTER TABLE app_jobs.job_history DROP CONSTRAINT IF EXISTS job_history_status_check;
ALTER TABLE app_jobs.job_history
  ADD CONSTRAINT job_history_status_check
  CHECK (status IN ('completed', 'failed', 'cancelled'));

-- ---------------------------------------------------------------------------------------------
-- Every job with its state, queued or finished (the status model of `jobs` and the API):
--   running    locked by a worker
--   retrying   not locked, an attempt failed (attempts > 0, last_error set): waits for run_at
--   scheduled  not locked, due later (run_at > now())
--   queued     not locked, due now
--   completed, failed, cancelled   finished (job_history), kept for JOBS_HISTORY_RETENTION
-- ---------------------------------------------------------------------------------------------

-- Jobs still in the queue (app_jobs.jobs), with their status.
CREATE OR REPLACE VIEW app_jobs.active_job_states AS
  SELECT j.id, j.task_identifier AS task,
         CASE WHEN j.locked_at IS NOT NULL THEN 'running'
              WHEN j.attempts > 0 AND j.last_error IS NOT NULL THEN 'retrying'
              WHEN j.run_at > now() THEN 'scheduled'
              ELSE 'queued' END AS status,
         j.queue_name AS queue, j.database_id, j.actor_id, j.priority, j.attempts,
         j.max_attempts, j.progress::integer AS progress, j.progress_message, j.payload,
         NULL::json AS result, j.last_error, j.key, j.locked_by AS worker_id, j.created_at,
         j.run_at, j.locked_at AS started_at, NULL::timestamptz AS finished_at
    FROM app_jobs.jobs j;

-- Every job, in the queue or in the history.
CREATE OR REPLACE VIEW app_jobs.job_states AS
  SELECT a.* FROM app_jobs.active_job_states a
  UNION ALL
  SELECT h.job_id, h.task_identifier, h.status, h.queue_name, h.database_id, h.actor_id,
         h.priority, h.attempts, h.max_attempts,
         CASE WHEN h.status = 'completed' THEN 100 END, NULL::text, h.payload, h.result,
         h.last_error, h.key, h.worker_id, h.created_at, h.run_at, h.started_at, h.finished_at
    FROM app_jobs.job_history h;

REVOKE ALL ON app_jobs.active_job_states, app_jobs.job_states FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Cancelling and retrying by id
-- ---------------------------------------------------------------------------------------------

-- Jobs not running (locked) → history as cancelled with `message` as the error; returns the ids
-- cancelled. Running jobs are left alone (they finish or fail on their own).
CREATE OR REPLACE FUNCTION app_jobs.cancel_jobs(
  job_ids bigint[],
  message text DEFAULT 'cancelled by an operator'
)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  v_ids bigint[];
BEGIN
  SELECT array_agg(f.id) INTO v_ids
    FROM app_jobs.permanently_fail_jobs(job_ids, coalesce(message, 'cancelled by an operator')) f;
  IF v_ids IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY
  UPDATE app_jobs.job_history h
     SET status = 'cancelled'
   WHERE h.job_id = ANY (v_ids)
  RETURNING h.job_id;
END;
$$;

-- Failed or cancelled jobs → back into the queue (same id, attempts 0, run now, last error
-- kept); returns the ids re-queued (ids that are not failed or cancelled are skipped).
CREATE OR REPLACE FUNCTION app_jobs.retry_jobs(job_ids bigint[])
RETURNS SETOF bigint
LANGUAGE sql VOLATILE
AS $$
  WITH gone AS (
    DELETE FROM app_jobs.job_history h
     WHERE h.job_id = ANY (job_ids)
       AND h.status IN ('failed', 'cancelled')
    RETURNING h.*
  )
  INSERT INTO app_jobs.jobs (id, database_id, actor_id, task_identifier, payload, queue_name,
                             priority, run_at, attempts, max_attempts, key, last_error)
  SELECT g.job_id, g.database_id, g.actor_id, g.task_identifier, g.payload, g.queue_name,
         g.priority, now(), 0, g.max_attempts, g.key, g.last_error
    FROM gone g
  RETURNING id
$$;

-- ---------------------------------------------------------------------------------------------
-- Live events: one notification per statement
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.tg_notify_job_events()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  v_ids bigint[];
BEGIN
  IF TG_OP = 'DELETE' THEN
    SELECT array_agg(c.id) INTO v_ids FROM (SELECT o.id FROM old_jobs o LIMIT 201) c;
  ELSE
    SELECT array_agg(c.id) INTO v_ids FROM (SELECT n.id FROM new_jobs n LIMIT 201) c;
  END IF;
  IF v_ids IS NOT NULL THEN
    PERFORM pg_notify('jobs:events',
                      left(TG_OP, 1) || ':' ||
                      CASE WHEN cardinality(v_ids) > 200 THEN '*'
                           ELSE array_to_string(v_ids, ',') END);
  END IF;
  RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS _950_job_events_insert ON app_jobs.jobs;
CREATE TRIGGER _950_job_events_insert
  AFTER INSERT ON app_jobs.jobs
  REFERENCING NEW TABLE AS new_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION app_jobs.tg_notify_job_events();

DROP TRIGGER IF EXISTS _950_job_events_update ON app_jobs.jobs;
CREATE TRIGGER _950_job_events_update
  AFTER UPDATE ON app_jobs.jobs
  REFERENCING NEW TABLE AS new_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION app_jobs.tg_notify_job_events();

DROP TRIGGER IF EXISTS _950_job_events_delete ON app_jobs.jobs;
CREATE TRIGGER _950_job_events_delete
  AFTER DELETE ON app_jobs.jobs
  REFERENCING OLD TABLE AS old_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION app_jobs.tg_notify_job_events();

-- ---------------------------------------------------------------------------------------------
-- Privileges: the new functions are for operators (administrator), not for PUBLIC.
-- ---------------------------------------------------------------------------------------------

REVOKE EXECUTE ON FUNCTION
  app_jobs.cancel_jobs(bigint[], text),
  app_jobs.retry_jobs(bigint[]),
  app_jobs.tg_notify_job_events()
  FROM PUBLIC;

DO $grants$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'administrator') THEN
    GRANT EXECUTE ON FUNCTION
      app_jobs.cancel_jobs(bigint[], text),
      app_jobs.retry_jobs(bigint[])
      TO administrator;
    GRANT SELECT ON app_jobs.active_job_states, app_jobs.job_states TO administrator;
  ELSE
    RAISE NOTICE 'jobs migrate: role administrator does not exist; skipping its grants';
  END IF;
END;
$grants$;
