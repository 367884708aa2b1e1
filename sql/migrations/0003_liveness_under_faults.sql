-- 0003_liveness_under_faults: rescue that cannot take a live worker's jobs, and giving back
-- the attempts of jobs whose function could not be reached.
--
-- rescue_dead_workers(dead_after, heard_for): the rescue the job service runs. The one-argument
-- form of 0001 is kept unchanged for callers that use it.
--
-- The rule. A worker is dead when the database has had the chance to hear from it for
-- `dead_after` and did not: its staleness is measured from the latest of
--   * its own last heartbeat (`last_seen_at`),
--   * the moment the rescuer's own continuous contact with the database began
--     (`now() - heard_for`; the rescuer resets it after any failed statement or any gap in its
--     contact longer than it can explain), and
--   * the start of this PostgreSQL server (`pg_postmaster_start_time()`),
-- and nothing is rescued at all while `heard_for < dead_after`.
-- Why it is safe: during a database outage, restart or failover, no worker can write a
-- heartbeat; the rescuer cannot either, so its `heard_for` restarts when the database is back.
-- From then on every live worker reconnects and heartbeats within its heartbeat interval
-- (< dead_after), so by the time the rescuer may rescue, every live worker has been heard
-- again. However long the outage, it never counts against a worker.

CREATE OR REPLACE FUNCTION app_jobs.rescue_dead_workers(dead_after interval, heard_for interval)
RETURNS TABLE (job_id bigint, worker_id text, outcome text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
  v_dead text[];
  v_heard_since timestamptz;
BEGIN
  IF dead_after IS NULL OR heard_for IS NULL OR heard_for < dead_after THEN
    RETURN;
  END IF;
  v_heard_since := greatest(now() - heard_for, pg_catalog.pg_postmaster_start_time());

  WITH gone AS (
    DELETE FROM app_jobs.workers w
     WHERE greatest(w.last_seen_at, v_heard_since) < now() - dead_after
    RETURNING w.worker_id
  )
  SELECT array_agg(g.worker_id) INTO v_dead FROM gone g;
  IF v_dead IS NULL THEN
    RETURN;
  END IF;

  UPDATE app_jobs.job_queues q
     SET locked_at = NULL, locked_by = NULL
   WHERE q.locked_by = ANY (v_dead);
  UPDATE app_jobs.scheduled_jobs s
     SET locked_at = NULL, locked_by = NULL
   WHERE s.locked_by = ANY (v_dead);

  RETURN QUERY
  WITH victims AS MATERIALIZED (
    SELECT j.id, j.locked_by, j.attempts < j.max_attempts AS retry
      FROM app_jobs.jobs j
     WHERE j.locked_by = ANY (v_dead)
       AND NOT coalesce(j.locked_until > now(), false)
       FOR UPDATE OF j
  ),
  retried AS (
    UPDATE app_jobs.jobs j
       SET locked_at = NULL,
           locked_by = NULL,
           locked_until = NULL,
           last_error = 'worker ' || v.locked_by || ' stopped responding'
      FROM victims v
     WHERE j.id = v.id AND v.retry
    RETURNING j.id, v.locked_by
  )
  SELECT r.id, r.locked_by, 'retry'::text FROM retried r;

  RETURN QUERY
  WITH victims AS MATERIALIZED (
    SELECT array_agg(j.id) AS ids,
           array_agg('worker ' || j.locked_by || ' stopped responding') AS msgs
      FROM app_jobs.jobs j
     WHERE j.locked_by = ANY (v_dead)
       AND NOT coalesce(j.locked_until > now(), false)
  )
  SELECT (f.job).id, (f.job).locked_by, f.outcome
    FROM victims v,
         app_jobs.fail_locked_jobs(NULL, v.ids, v.msgs, NULL, false) f
   WHERE v.ids IS NOT NULL;
END;
$$;

-- Jobs of worker_id whose function could not be reached (connection refused, a gateway's
-- 502/503/504): unlocked with their attempt given back, runnable again after delays[i] seconds,
-- last_error set to messages[i] when given (NULL keeps it: jobs released before they ran).
-- Returns the ids released (jobs no longer locked by worker_id are left alone).
CREATE OR REPLACE FUNCTION app_jobs.release_unreachable_jobs(
  worker_id text,
  job_ids bigint[],
  delays double precision[],
  messages text[] DEFAULT NULL
)
RETURNS SETOF bigint
LANGUAGE sql VOLATILE
AS $$
  WITH input AS (
    SELECT DISTINCT ON (u.id) u.id, greatest(coalesce(u.delay, 0), 0) AS delay, u.message
      FROM unnest(job_ids, delays, messages) AS u(id, delay, message)
     WHERE u.id IS NOT NULL
     ORDER BY u.id
  ),
  released AS (
    UPDATE app_jobs.jobs j
       SET locked_at = NULL,
           locked_by = NULL,
           locked_until = NULL,
           attempts = greatest(j.attempts - 1, 0),
           run_at = greatest(j.run_at, now() + make_interval(secs => i.delay)),
           last_error = coalesce(i.message, j.last_error)
      FROM input i
     WHERE j.id = i.id
       AND j.locked_by = release_unreachable_jobs.worker_id
    RETURNING j.id, j.queue_name
  ),
  queues AS (
    UPDATE app_jobs.job_queues q
       SET locked_at = NULL, locked_by = NULL
     WHERE q.locked_by = release_unreachable_jobs.worker_id
       AND q.queue_name IN (SELECT r.queue_name FROM released r WHERE r.queue_name IS NOT NULL)
  )
  SELECT r.id FROM released r
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges: for the job service (administrator), not for PUBLIC.
-- ---------------------------------------------------------------------------------------------

REVOKE EXECUTE ON FUNCTION
  app_jobs.rescue_dead_workers(interval, interval),
  app_jobs.release_unreachable_jobs(text, bigint[], double precision[], text[])
  FROM PUBLIC;

DO $grants$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'administrator') THEN
    GRANT EXECUTE ON FUNCTION
      app_jobs.rescue_dead_workers(interval, interval),
      app_jobs.release_unreachable_jobs(text, bigint[], double precision[], text[])
      TO administrator;
  ELSE
    RAISE NOTICE 'jobs migrate: role administrator does not exist; skipping its grants';
  END IF;
END;
$grants$;
