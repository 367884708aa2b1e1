-- 0002_tenant_safety: job keys per tenant, enqueue rights judged from the caller, hostile task
-- names refused, and no function of the schema executable by PUBLIC.
--
-- * Job keys (jobs and scheduled jobs) are unique per (database_id, key), not across the whole
--   table: one tenant's add_job with another tenant's key creates its own job and never touches
--   the other tenant's waiting or running job.
-- * add_job / add_scheduled_job with an explicit db_id, and add_jobs elements with db_id or
--   actor_id, are checked against the caller's claims (jwt.claims.database_id / user_id) unless
--   the caller is an administrator (app_jobs.caller_is_admin()).
-- * job_status answers a caller that is not an administrator about its own database's jobs only.
-- * Task identifiers '', '.', '..' and any containing '/' are refused on every insert (they
--   would become function URL paths).
-- * EXECUTE is revoked from PUBLIC on every function of the schema and granted explicitly.
--
-- Adopts in place a database migrated with 0001 (itself adopted from 0.16.0 or not): existing
-- keys were globally unique, so they are unique per tenant too; existing rows with a refused
-- task identifier stay where they are (the worker's routing refuses them with a clear error).
-- Functions redefined here carry their whole definition; later migrations that change one of
-- them start from this file, not from 0001.

-- ---------------------------------------------------------------------------------------------
-- Keys unique per tenant. Partial indexes: unkeyed jobs (the common case) maintain no key index.
-- ---------------------------------------------------------------------------------------------

-- Drop the unique constraints on (key) alone: jobs_key_key / scheduled_jobs_key_key in the
-- reference and 0001, or whatever an installation renamed them to.
DO $keys$
DECLARE
  v_constraint record;
BEGIN
  FOR v_constraint IN
    SELECT c.conrelid::regclass AS tbl, c.conname
      FROM pg_catalog.pg_constraint c
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attname = 'key'
     WHERE c.conrelid IN ('app_jobs.jobs'::regclass, 'app_jobs.scheduled_jobs'::regclass)
       AND c.contype = 'u'
       AND c.conkey = ARRAY[a.attnum]
  LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', v_constraint.tbl, v_constraint.conname);
  END LOOP;
END;
$keys$;

DROP INDEX IF EXISTS app_jobs.jobs_database_id_key_idx;
CREATE UNIQUE INDEX jobs_database_id_key_idx
  ON app_jobs.jobs (database_id, key) WHERE key IS NOT NULL;

DROP INDEX IF EXISTS app_jobs.scheduled_jobs_database_id_key_idx;
CREATE UNIQUE INDEX scheduled_jobs_database_id_key_idx
  ON app_jobs.scheduled_jobs (database_id, key) WHERE key IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- Task identifiers that cannot be a task name. The WHEN clause is evaluated without calling the
-- function, so a good row costs one comparison; only a refused row runs the function.
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.tg_refuse_task_identifier()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  RAISE EXCEPTION 'task_identifier % is not a task name: expected a name that is not empty, '
                  '''.'' or ''..'' and contains no ''/''',
    quote_literal(left(NEW.task_identifier, 200))
    USING ERRCODE = 'check_violation',
          COLUMN = 'task_identifier',
          TABLE = TG_TABLE_NAME,
          SCHEMA = TG_TABLE_SCHEMA;
END;
$$;

DROP TRIGGER IF EXISTS _050_jobs_task_identifier ON app_jobs.jobs;
CREATE TRIGGER _050_jobs_task_identifier
  BEFORE INSERT OR UPDATE OF task_identifier ON app_jobs.jobs
  FOR EACH ROW
  WHEN (NEW.task_identifier IN ('', '.', '..') OR strpos(NEW.task_identifier, '/') > 0)
  EXECUTE FUNCTION app_jobs.tg_refuse_task_identifier();

DROP TRIGGER IF EXISTS _050_scheduled_jobs_task_identifier ON app_jobs.scheduled_jobs;
CREATE TRIGGER _050_scheduled_jobs_task_identifier
  BEFORE INSERT OR UPDATE OF task_identifier ON app_jobs.scheduled_jobs
  FOR EACH ROW
  WHEN (NEW.task_identifier IN ('', '.', '..') OR strpos(NEW.task_identifier, '/') > 0)
  EXECUTE FUNCTION app_jobs.tg_refuse_task_identifier();

-- ---------------------------------------------------------------------------------------------
-- Who is calling. Inside a SECURITY DEFINER function current_user is the function's owner; the
-- caller is the role set with SET [LOCAL] ROLE (the `role` setting, as PostGraphile does for
-- `authenticated`), else the session user.
-- ---------------------------------------------------------------------------------------------

-- An administrator: a superuser, a member of the schema's owner (the role that ran
-- `jobs migrate`, which the job service and `jobs add` use), or a member of `administrator`.
CREATE OR REPLACE FUNCTION app_jobs.caller_is_admin()
RETURNS boolean
LANGUAGE sql STABLE
AS $$
  SELECT coalesce((
    SELECT r.rolsuper
           OR pg_catalog.pg_has_role(r.oid, n.nspowner, 'MEMBER')
           OR EXISTS (SELECT 1
                        FROM pg_catalog.pg_roles a
                       WHERE a.rolname = 'administrator'
                         AND pg_catalog.pg_has_role(r.oid, a.oid, 'MEMBER'))
      FROM pg_catalog.pg_roles r,
           pg_catalog.pg_namespace n
     WHERE r.rolname = CASE WHEN pg_catalog.current_setting('role') = 'none'
                            THEN session_user::text
                            ELSE pg_catalog.current_setting('role') END
       AND n.oid = (SELECT c.relnamespace FROM pg_catalog.pg_class c
                     WHERE c.oid = 'app_jobs.jobs'::regclass)
  ), false)
$$;

-- The database a caller enqueues into: db_id, else jwt.claims.database_id, else an error (as
-- require_database_id). A db_id other than the claims' is refused unless the caller is an
-- administrator; without claims the db_id is taken as given (reference behaviour).
CREATE OR REPLACE FUNCTION app_jobs.caller_database_id(db_id uuid)
RETURNS uuid
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  v_claim uuid;
BEGIN
  IF db_id IS NULL THEN
    RETURN app_jobs.require_database_id(NULL);
  END IF;
  IF coalesce(current_setting('jwt.claims.database_id', true), '') = '' THEN
    RETURN db_id;  -- no claims (the job service, `jobs add`, a trigger of the owner): fast path
  END IF;
  v_claim := app_jobs.current_database_id();
  IF v_claim IS NULL OR db_id = v_claim OR app_jobs.caller_is_admin() THEN
    RETURN db_id;
  END IF;
  RAISE EXCEPTION 'db_id % is not the database of the caller''s claims (jwt.claims.database_id = %)',
    db_id, v_claim
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'leave db_id out to enqueue for the claims'' database; only an administrator '
                 'enqueues for another database';
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Enqueueing (full definitions; keys looked up within the job's database only)
-- ---------------------------------------------------------------------------------------------

-- The one place a job is inserted: both add_job forms, add_jobs and the trigger helpers.
CREATE OR REPLACE FUNCTION app_jobs.enqueue_job(
  db_id uuid,
  actor_id uuid,
  identifier text,
  payload json,
  job_key text,
  queue_name text,
  run_at timestamptz,
  max_attempts integer,
  priority integer
)
RETURNS app_jobs.jobs
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
  v_job app_jobs.jobs;
  v_db uuid := app_jobs.require_database_id(db_id);
  v_queue text := app_jobs.normalize_queue_name(queue_name);
BEGIN
  IF identifier IS NULL THEN
    RAISE EXCEPTION 'identifier (the task name) is required' USING ERRCODE = 'not_null_violation';
  END IF;
  IF job_key IS NOT NULL THEN
    -- Replace the waiting job of that key in this database: new payload, attempts reset.
    INSERT INTO app_jobs.jobs AS j (database_id, actor_id, task_identifier, payload, queue_name,
                                    run_at, max_attempts, key, priority)
    VALUES (v_db, enqueue_job.actor_id, identifier, coalesce(payload, '{}'::json), v_queue,
            coalesce(run_at, now()), coalesce(max_attempts, 25), job_key, coalesce(priority, 0))
    ON CONFLICT (database_id, key) WHERE key IS NOT NULL DO UPDATE
      SET actor_id = EXCLUDED.actor_id,
          task_identifier = EXCLUDED.task_identifier,
          payload = EXCLUDED.payload,
          queue_name = EXCLUDED.queue_name,
          max_attempts = EXCLUDED.max_attempts,
          run_at = EXCLUDED.run_at,
          priority = EXCLUDED.priority,
          attempts = 0,
          last_error = NULL
      WHERE j.locked_at IS NULL
    RETURNING * INTO v_job;
    IF FOUND THEN
      RETURN v_job;
    END IF;
    -- The keyed job of this database is running: it keeps running but loses the key (and is
    -- not retried); the replacement carries the key.
    UPDATE app_jobs.jobs AS j
       SET key = NULL, attempts = j.max_attempts
     WHERE j.database_id = v_db
       AND j.key = job_key;
  END IF;
  INSERT INTO app_jobs.jobs (database_id, actor_id, task_identifier, payload, queue_name, run_at,
                             max_attempts, key, priority)
  VALUES (v_db, enqueue_job.actor_id, identifier, coalesce(payload, '{}'::json), v_queue,
          coalesce(run_at, now()), coalesce(max_attempts, 25), job_key, coalesce(priority, 0))
  RETURNING * INTO v_job;
  RETURN v_job;
END;
$$;

-- Reference form: explicit database id (NULL falls back to jwt.claims.database_id; another
-- database than the claims' only for an administrator).
CREATE OR REPLACE FUNCTION app_jobs.add_job(
  db_id uuid,
  identifier text,
  payload json DEFAULT '{}'::json,
  job_key text DEFAULT NULL,
  queue_name text DEFAULT NULL,
  run_at timestamptz DEFAULT now(),
  max_attempts integer DEFAULT 25,
  priority integer DEFAULT 0
)
RETURNS app_jobs.jobs
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM app_jobs.enqueue_job(app_jobs.caller_database_id(db_id),
                                     app_jobs.current_user_id(), identifier, payload, job_key,
                                     queue_name, run_at, max_attempts, priority)
$$;

-- Claims form: database id from jwt.claims.database_id, actor from jwt.claims.user_id.
CREATE OR REPLACE FUNCTION app_jobs.add_job(
  identifier text,
  payload json DEFAULT '{}'::json,
  job_key text DEFAULT NULL,
  queue_name text DEFAULT NULL,
  run_at timestamptz DEFAULT now(),
  max_attempts integer DEFAULT 25,
  priority integer DEFAULT 0
)
RETURNS app_jobs.jobs
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM app_jobs.enqueue_job(NULL, app_jobs.current_user_id(), identifier, payload,
                                     job_key, queue_name, run_at, max_attempts, priority)
$$;

-- Which element and field of an add_jobs array cannot be read (the error path of add_jobs only:
-- one subtransaction per field tried).
CREATE OR REPLACE FUNCTION app_jobs.add_jobs_bad_field(jobs json)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  v_item json;
  v_n bigint;
  v_field text;
BEGIN
  FOR v_item, v_n IN SELECT t.e, t.n FROM json_array_elements(jobs) WITH ORDINALITY AS t(e, n) LOOP
    FOREACH v_field IN ARRAY ARRAY['identifier', 'db_id', 'actor_id', 'payload', 'job_key',
                                   'queue_name', 'run_at', 'max_attempts', 'priority'] LOOP
      BEGIN
        CASE v_field
          WHEN 'db_id', 'actor_id' THEN
            PERFORM nullif(v_item ->> v_field, '')::uuid;
          WHEN 'run_at' THEN
            PERFORM (v_item ->> v_field)::timestamptz;
          WHEN 'max_attempts', 'priority' THEN
            PERFORM (v_item ->> v_field)::integer;
          WHEN 'payload' THEN
            PERFORM v_item -> v_field;
          ELSE
            PERFORM v_item ->> v_field;
        END CASE;
      EXCEPTION WHEN data_exception THEN
        RETURN 'element ' || v_n || ' (from 1), field "' || v_field || '"';
      END;
    END LOOP;
  END LOOP;
  RETURN NULL;
END;
$$;

-- Many jobs at once: a JSON array of objects with add_job's argument names (+ actor_id).
-- db_id / actor_id default to the claims; a caller that is not an administrator may not set
-- them to anything else than its claims.
CREATE OR REPLACE FUNCTION app_jobs.add_jobs(jobs json)
RETURNS SETOF app_jobs.jobs
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_claim_db uuid := app_jobs.current_database_id();
  v_claim_actor uuid := app_jobs.current_user_id();
  v_admin boolean;
  v_item json;
  v_n bigint;
  v_value text;
  v_state text;
  v_message text;
  v_where text;
BEGIN
  IF jobs IS NULL OR json_typeof(jobs) <> 'array' THEN
    RAISE EXCEPTION 'add_jobs(jobs): expected a JSON array of job objects, got %',
      coalesce(json_typeof(jobs), 'NULL') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  BEGIN
    FOR v_item, v_n IN SELECT t.e, t.n FROM json_array_elements(jobs) WITH ORDINALITY AS t(e, n)
    LOOP
      IF json_typeof(v_item) <> 'object' THEN
        RAISE EXCEPTION 'add_jobs(jobs): element % (from 1) must be a JSON object, got %',
          v_n, json_typeof(v_item) USING ERRCODE = 'invalid_parameter_value';
      END IF;
      IF coalesce(v_item ->> 'identifier', '') = '' THEN
        RAISE EXCEPTION 'add_jobs(jobs): element % (from 1) has no "identifier"', v_n
          USING ERRCODE = 'not_null_violation';
      END IF;
      v_value := nullif(v_item ->> 'db_id', '');
      IF v_value IS NULL THEN
        IF v_claim_db IS NULL THEN
          PERFORM app_jobs.require_database_id(NULL);
        END IF;
      ELSIF v_claim_db IS NOT NULL AND v_value::uuid <> v_claim_db THEN
        v_admin := coalesce(v_admin, app_jobs.caller_is_admin());
        IF NOT v_admin THEN
          RAISE EXCEPTION 'add_jobs(jobs): element % (from 1): db_id % is not the database of '
                          'the caller''s claims (jwt.claims.database_id = %)',
            v_n, v_value, v_claim_db
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'leave db_id out; only an administrator enqueues for another database';
        END IF;
      END IF;
      v_value := nullif(v_item ->> 'actor_id', '');
      IF v_value IS NOT NULL AND v_value::uuid IS DISTINCT FROM v_claim_actor THEN
        v_admin := coalesce(v_admin, app_jobs.caller_is_admin());
        IF NOT v_admin THEN
          RAISE EXCEPTION 'add_jobs(jobs): element % (from 1): actor_id % is not the caller '
                          '(jwt.claims.user_id = %)',
            v_n, v_value, coalesce(v_claim_actor::text, 'not set')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'leave actor_id out: it is taken from jwt.claims.user_id; only an '
                         'administrator sets another';
        END IF;
      END IF;
    END LOOP;

    -- Unkeyed jobs: one INSERT (one NOTIFY).
    RETURN QUERY
    INSERT INTO app_jobs.jobs (database_id, actor_id, task_identifier, payload, queue_name,
                               run_at, max_attempts, priority)
    SELECT coalesce(nullif(e ->> 'db_id', '')::uuid, v_claim_db),
           coalesce(nullif(e ->> 'actor_id', '')::uuid, v_claim_actor),
           e ->> 'identifier',
           coalesce(CASE WHEN json_typeof(e -> 'payload') = 'null' THEN NULL ELSE e -> 'payload' END,
                    '{}'::json),
           app_jobs.normalize_queue_name(e ->> 'queue_name'),
           coalesce((e ->> 'run_at')::timestamptz, now()),
           coalesce((e ->> 'max_attempts')::integer, 25),
           coalesce((e ->> 'priority')::integer, 0)
      FROM json_array_elements(jobs) WITH ORDINALITY AS t(e, n)
     WHERE e ->> 'job_key' IS NULL
     ORDER BY n
    RETURNING *;

    -- Keyed jobs: the add_job replacement rules, one by one, within each job's database.
    RETURN QUERY
    SELECT k.*
      FROM json_array_elements(jobs) WITH ORDINALITY AS t(e, n)
     CROSS JOIN LATERAL app_jobs.enqueue_job(
             coalesce(nullif(e ->> 'db_id', '')::uuid, v_claim_db),
             coalesce(nullif(e ->> 'actor_id', '')::uuid, v_claim_actor),
             e ->> 'identifier',
             CASE WHEN json_typeof(e -> 'payload') = 'null' THEN NULL ELSE e -> 'payload' END,
             e ->> 'job_key',
             e ->> 'queue_name',
             (e ->> 'run_at')::timestamptz,
             (e ->> 'max_attempts')::integer,
             (e ->> 'priority')::integer) AS k
     WHERE e ->> 'job_key' IS NOT NULL
     ORDER BY n;
  EXCEPTION WHEN data_exception THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
    IF v_message LIKE 'add_jobs(jobs):%' THEN
      RAISE;
    END IF;
    v_where := app_jobs.add_jobs_bad_field(jobs);
    RAISE EXCEPTION 'add_jobs(jobs): %: %', coalesce(v_where, 'an element'), v_message
      USING ERRCODE = v_state;
  END;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.enqueue_scheduled_job(
  db_id uuid,
  actor_id uuid,
  identifier text,
  payload json,
  schedule_info json,
  job_key text,
  queue_name text,
  max_attempts integer,
  priority integer
)
RETURNS app_jobs.scheduled_jobs
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
  v_row app_jobs.scheduled_jobs;
  v_db uuid := app_jobs.require_database_id(db_id);
  v_queue text := app_jobs.normalize_queue_name(queue_name);
BEGIN
  IF identifier IS NULL THEN
    RAISE EXCEPTION 'identifier (the task name) is required' USING ERRCODE = 'not_null_violation';
  END IF;
  IF job_key IS NOT NULL THEN
    INSERT INTO app_jobs.scheduled_jobs AS s (database_id, actor_id, task_identifier, payload,
                                              queue_name, schedule_info, max_attempts, key,
                                              priority)
    VALUES (v_db, enqueue_scheduled_job.actor_id, identifier, coalesce(payload, '{}'::json),
            v_queue, coalesce(schedule_info, '{}'::json), coalesce(max_attempts, 25), job_key,
            coalesce(priority, 0))
    ON CONFLICT (database_id, key) WHERE key IS NOT NULL DO UPDATE
      SET actor_id = EXCLUDED.actor_id,
          task_identifier = EXCLUDED.task_identifier,
          payload = EXCLUDED.payload,
          queue_name = EXCLUDED.queue_name,
          max_attempts = EXCLUDED.max_attempts,
          schedule_info = EXCLUDED.schedule_info,
          priority = EXCLUDED.priority,
          next_run_at = NULL,
          schedule_error = NULL
      WHERE s.locked_at IS NULL
    RETURNING * INTO v_row;
    IF FOUND THEN
      RETURN v_row;
    END IF;
    -- Locked by a scheduler: replace the row (the new row keeps the key; a new NOTIFY makes a
    -- scheduler pick it up, the old timer finds its row gone).
    DELETE FROM app_jobs.scheduled_jobs AS s
     WHERE s.database_id = v_db
       AND s.key = job_key;
  END IF;
  INSERT INTO app_jobs.scheduled_jobs (database_id, actor_id, task_identifier, payload, queue_name,
                                       schedule_info, max_attempts, key, priority)
  VALUES (v_db, enqueue_scheduled_job.actor_id, identifier, coalesce(payload, '{}'::json), v_queue,
          coalesce(schedule_info, '{}'::json), coalesce(max_attempts, 25), job_key,
          coalesce(priority, 0))
  RETURNING * INTO v_row;
  RETURN v_row;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.add_scheduled_job(
  db_id uuid,
  identifier text,
  payload json DEFAULT '{}'::json,
  schedule_info json DEFAULT '{}'::json,
  job_key text DEFAULT NULL,
  queue_name text DEFAULT NULL,
  max_attempts integer DEFAULT 25,
  priority integer DEFAULT 0
)
RETURNS app_jobs.scheduled_jobs
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM app_jobs.enqueue_scheduled_job(app_jobs.caller_database_id(db_id),
                                               app_jobs.current_user_id(), identifier,
                                               payload, schedule_info, job_key, queue_name,
                                               max_attempts, priority)
$$;

-- ---------------------------------------------------------------------------------------------
-- Status: an administrator sees every job; any other caller only its claims' database's jobs
-- (an unknown id and another database's id look the same: no row).
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.job_status(job_id bigint)
RETURNS TABLE (
  job_id bigint,
  status text,
  task_identifier text,
  attempts integer,
  max_attempts integer,
  last_error text,
  result json,
  progress smallint,
  progress_message text,
  run_at timestamptz,
  locked_by text,
  created_at timestamptz,
  finished_at timestamptz
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  WITH caller AS MATERIALIZED (
    SELECT app_jobs.caller_is_admin() AS admin, app_jobs.current_database_id() AS db
  )
  SELECT j.id, CASE WHEN j.locked_at IS NULL THEN 'queued' ELSE 'running' END,
         j.task_identifier, j.attempts, j.max_attempts, j.last_error, NULL::json, j.progress,
         j.progress_message, j.run_at, j.locked_by, j.created_at, NULL::timestamptz
    FROM app_jobs.jobs j, caller c
   WHERE j.id = job_status.job_id
     AND (c.admin OR j.database_id = c.db)
  UNION ALL
  SELECT h.job_id, h.status, h.task_identifier, h.attempts, h.max_attempts, h.last_error,
         h.result, NULL::smallint, NULL::text, h.run_at, h.worker_id, h.created_at, h.finished_at
    FROM app_jobs.job_history h, caller c
   WHERE h.job_id = job_status.job_id
     AND (c.admin OR h.database_id = c.db)
   LIMIT 1
$$;

-- ---------------------------------------------------------------------------------------------
-- Spawning a schedule's job: its key is looked up within the schedule's database only.
-- ---------------------------------------------------------------------------------------------

-- ALREADY_SCHEDULED while the previous job is still pending: it exists and is not exhausted,
-- and its lock (if any) is not stale (older than job_expiry, held by a worker without a fresh
-- heartbeat). A keyed schedule replaces its waiting job.
CREATE OR REPLACE FUNCTION app_jobs.run_scheduled_job(id bigint, job_expiry interval DEFAULT '1 hours')
RETURNS app_jobs.jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  v_sched app_jobs.scheduled_jobs;
  v_job app_jobs.jobs;
BEGIN
  SELECT * INTO v_sched FROM app_jobs.scheduled_jobs s WHERE s.id = run_scheduled_job.id
     FOR UPDATE;
  IF NOT FOUND THEN
    RETURN v_job;
  END IF;
  IF v_sched.last_scheduled_id IS NOT NULL AND EXISTS (
       SELECT 1
         FROM app_jobs.jobs j
        WHERE j.id = v_sched.last_scheduled_id
          AND NOT (j.locked_at IS NULL AND j.attempts >= j.max_attempts)
          AND NOT (coalesce(j.locked_at < now() - job_expiry, false)
                   AND NOT EXISTS (SELECT 1 FROM app_jobs.workers w
                                    WHERE w.worker_id = j.locked_by
                                      AND w.last_seen_at > now() - job_expiry))) THEN
    RAISE EXCEPTION 'ALREADY_SCHEDULED';
  END IF;
  INSERT INTO app_jobs.jobs AS j (database_id, actor_id, queue_name, task_identifier, payload,
                                  priority, max_attempts, key)
  VALUES (v_sched.database_id, v_sched.actor_id, v_sched.queue_name, v_sched.task_identifier,
          v_sched.payload, v_sched.priority, v_sched.max_attempts, v_sched.key)
  ON CONFLICT (database_id, key) WHERE key IS NOT NULL DO UPDATE
    SET actor_id = EXCLUDED.actor_id,
        queue_name = EXCLUDED.queue_name,
        task_identifier = EXCLUDED.task_identifier,
        payload = EXCLUDED.payload,
        priority = EXCLUDED.priority,
        max_attempts = EXCLUDED.max_attempts,
        run_at = now(),
        attempts = 0,
        last_error = NULL
    WHERE j.locked_at IS NULL
  RETURNING * INTO v_job;
  IF NOT FOUND THEN
    -- A job of this database with the schedule's key is running.
    RAISE EXCEPTION 'ALREADY_SCHEDULED';
  END IF;
  UPDATE app_jobs.scheduled_jobs s
     SET last_scheduled = now(), last_scheduled_id = v_job.id
   WHERE s.id = v_sched.id;
  RETURN v_job;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges. No function of the schema is executable by PUBLIC. `administrator` may execute
-- every function (0001's default privileges grant it the functions of later migrations too);
-- `authenticated` only the enqueueing functions (SECURITY DEFINER, tenant-checked) and
-- job_status. Trigger functions need no EXECUTE grant to fire.
-- Roles are created when missing and the migrating user may create roles; otherwise the grants
-- to the missing role are skipped with a NOTICE.
-- ---------------------------------------------------------------------------------------------

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA app_jobs FROM PUBLIC;

DO $grants$
DECLARE
  v_can_create boolean;
  v_role text;
BEGIN
  SELECT r.rolsuper OR r.rolcreaterole INTO v_can_create
    FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
  FOREACH v_role IN ARRAY ARRAY['administrator', 'authenticated'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
      IF v_can_create THEN
        BEGIN
          EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
          RAISE NOTICE 'jobs migrate: created role %', v_role;
        EXCEPTION WHEN duplicate_object THEN
          NULL;  -- created concurrently (roles are cluster-wide)
        END;
      ELSE
        RAISE NOTICE 'jobs migrate: role % does not exist and % may not create roles; skipping its grants',
          v_role, current_user;
      END IF;
    END IF;
  END LOOP;

  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'administrator') THEN
    GRANT USAGE ON SCHEMA app_jobs TO administrator;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA app_jobs TO administrator;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
    GRANT USAGE ON SCHEMA app_jobs TO authenticated;
    REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA app_jobs FROM authenticated;
    GRANT EXECUTE ON FUNCTION
      app_jobs.add_job(uuid, text, json, text, text, timestamptz, integer, integer),
      app_jobs.add_job(text, json, text, text, timestamptz, integer, integer),
      app_jobs.add_jobs(json),
      app_jobs.add_scheduled_job(uuid, text, json, json, text, text, integer, integer),
      app_jobs.add_scheduled_job(text, json, json, text, text, integer, integer),
      app_jobs.job_status(bigint)
      TO authenticated;
  END IF;
END;
$grants$;
