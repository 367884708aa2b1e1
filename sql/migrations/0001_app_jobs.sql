-- 0001_app_jobs: the app_jobs schema, call-compatible with @pgpm/database-jobs 0.16.0.
--
-- Written to run on an empty database *and* on a database that already holds the reference
-- 0.16.0 schema (CREATE ... IF NOT EXISTS, ADD COLUMN IF NOT EXISTS, CREATE OR REPLACE), so
-- `jobs migrate` adopts an existing installation in place and keeps its queued jobs.
-- The runner executes this file in one transaction. The schema name `app_jobs` is replaced by
-- the runner when JOBS_SCHEMA names another schema; every object below is schema-qualified.

CREATE SCHEMA IF NOT EXISTS app_jobs;

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS app_jobs.jobs (
  id bigserial PRIMARY KEY,
  database_id uuid NOT NULL,
  queue_name text DEFAULT NULL,
  task_identifier text NOT NULL,
  payload json NOT NULL DEFAULT '{}'::json,
  priority integer NOT NULL DEFAULT 0,
  run_at timestamptz NOT NULL DEFAULT now(),
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 25,
  key text DEFAULT NULL,
  last_error text DEFAULT NULL,
  locked_at timestamptz DEFAULT NULL,
  locked_by text DEFAULT NULL,
  CHECK (length(key) < 513),
  CHECK (length(task_identifier) < 127),
  CHECK (max_attempts > 0),
  CHECK (length(queue_name) < 127),
  CHECK (length(locked_by) > 3),
  UNIQUE (key)
);

ALTER TABLE app_jobs.jobs
  ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now(),
  ADD COLUMN IF NOT EXISTS updated_at timestamptz DEFAULT now(),
  ADD COLUMN IF NOT EXISTS actor_id uuid DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS locked_until timestamptz DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS progress smallint DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS progress_message text DEFAULT NULL;

-- Reference: a random-UUID queue per plainly INSERTed job (D6). Now: no queue.
ALTER TABLE app_jobs.jobs ALTER COLUMN queue_name SET DEFAULT NULL;

CREATE TABLE IF NOT EXISTS app_jobs.scheduled_jobs (
  id bigserial PRIMARY KEY,
  database_id uuid NOT NULL,
  queue_name text DEFAULT NULL,
  task_identifier text NOT NULL,
  payload json NOT NULL DEFAULT '{}'::json,
  priority integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 25,
  key text DEFAULT NULL,
  locked_at timestamptz DEFAULT NULL,
  locked_by text DEFAULT NULL,
  schedule_info json NOT NULL,
  last_scheduled timestamptz DEFAULT NULL,
  last_scheduled_id bigint DEFAULT NULL,
  CHECK (length(key) < 513),
  CHECK (length(task_identifier) < 127),
  CHECK (max_attempts > 0),
  CHECK (length(queue_name) < 127),
  CHECK (length(locked_by) > 3),
  UNIQUE (key)
);

ALTER TABLE app_jobs.scheduled_jobs
  ADD COLUMN IF NOT EXISTS actor_id uuid DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS next_run_at timestamptz DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS schedule_error text DEFAULT NULL;

ALTER TABLE app_jobs.scheduled_jobs ALTER COLUMN queue_name SET DEFAULT NULL;

CREATE TABLE IF NOT EXISTS app_jobs.job_queues (
  queue_name text NOT NULL PRIMARY KEY,
  job_count integer NOT NULL DEFAULT 0,
  locked_at timestamptz DEFAULT NULL,
  locked_by text DEFAULT NULL
);

CREATE TABLE IF NOT EXISTS app_jobs.job_history (
  job_id bigint PRIMARY KEY,
  database_id uuid NOT NULL,
  actor_id uuid DEFAULT NULL,
  task_identifier text NOT NULL,
  queue_name text DEFAULT NULL,
  payload json NOT NULL DEFAULT '{}'::json,
  priority integer NOT NULL DEFAULT 0,
  key text DEFAULT NULL,
  status text NOT NULL CHECK (status IN ('completed', 'failed')),
  attempts integer NOT NULL,
  max_attempts integer NOT NULL,
  result json DEFAULT NULL,
  last_error text DEFAULT NULL,
  worker_id text DEFAULT NULL,
  created_at timestamptz DEFAULT NULL,
  run_at timestamptz DEFAULT NULL,
  started_at timestamptz DEFAULT NULL,
  finished_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS app_jobs.workers (
  worker_id text PRIMARY KEY,
  started_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  info json DEFAULT NULL
);

-- ---------------------------------------------------------------------------------------------
-- Indexes. The reference index (priority, run_at, id) covered every row, running ones included;
-- the claim path now reads partial indexes of runnable rows only, in claim order.
-- ---------------------------------------------------------------------------------------------

DROP INDEX IF EXISTS app_jobs.priority_run_at_id_idx;
CREATE INDEX IF NOT EXISTS jobs_claim_idx
  ON app_jobs.jobs (priority, run_at, id)
  WHERE locked_at IS NULL AND queue_name IS NULL;
CREATE INDEX IF NOT EXISTS jobs_claim_queue_idx
  ON app_jobs.jobs (queue_name, priority, run_at, id)
  WHERE locked_at IS NULL AND queue_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_locked_by_idx ON app_jobs.jobs (locked_by);
CREATE INDEX IF NOT EXISTS jobs_locked_at_idx
  ON app_jobs.jobs (locked_at) WHERE locked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_locked_until_idx
  ON app_jobs.jobs (locked_until) WHERE locked_until IS NOT NULL;
CREATE INDEX IF NOT EXISTS scheduled_jobs_priority_id_idx
  ON app_jobs.scheduled_jobs (priority, id);
CREATE INDEX IF NOT EXISTS scheduled_jobs_locked_by_idx ON app_jobs.scheduled_jobs (locked_by);
CREATE INDEX IF NOT EXISTS job_queues_locked_by_idx ON app_jobs.job_queues (locked_by);
CREATE INDEX IF NOT EXISTS job_history_finished_at_idx ON app_jobs.job_history (finished_at);
CREATE INDEX IF NOT EXISTS job_history_task_idx
  ON app_jobs.job_history (task_identifier, finished_at);

-- ---------------------------------------------------------------------------------------------
-- Claims: our own readers of jwt.claims.* (no dependency on jwt_private / jwt_public).
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.claim_uuid(setting text)
RETURNS uuid
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  raw text := nullif(btrim(current_setting(setting, true)), '');
BEGIN
  IF raw IS NULL THEN
    RETURN NULL;
  END IF;
  IF raw !~* '^\{?[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}\}?$' THEN
    RAISE EXCEPTION 'setting % is %, which is not a UUID', setting, quote_literal(raw)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN raw::uuid;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.current_database_id()
RETURNS uuid
LANGUAGE sql STABLE
AS $$ SELECT app_jobs.claim_uuid('jwt.claims.database_id') $$;

CREATE OR REPLACE FUNCTION app_jobs.current_user_id()
RETURNS uuid
LANGUAGE sql STABLE
AS $$ SELECT app_jobs.claim_uuid('jwt.claims.user_id') $$;

CREATE OR REPLACE FUNCTION app_jobs.require_database_id(db_id uuid)
RETURNS uuid
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  found uuid := coalesce(db_id, app_jobs.current_database_id());
BEGIN
  IF found IS NULL THEN
    RAISE EXCEPTION 'no database id: pass db_id or set jwt.claims.database_id'
      USING ERRCODE = 'not_null_violation',
            HINT = 'SELECT set_config(''jwt.claims.database_id'', ''<uuid>'', true) first, '
                   'or call add_job(db_id := ..., identifier := ..., payload := ...)';
  END IF;
  RETURN found;
END;
$$;

-- '' / 'default' / NULL all mean "no queue".
CREATE OR REPLACE FUNCTION app_jobs.normalize_queue_name(queue_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE WHEN queue_name IN ('', 'default') THEN NULL ELSE queue_name END $$;

-- ---------------------------------------------------------------------------------------------
-- Trigger functions
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.do_notify()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], '');
  RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.tg_update_timestamps()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.created_at := now();
    NEW.updated_at := now();
  ELSIF TG_OP = 'UPDATE' THEN
    NEW.created_at := OLD.created_at;
    NEW.updated_at := greatest(now(), OLD.updated_at + interval '1 millisecond');
  END IF;
  RETURN NEW;
END;
$$;

-- jobs: timestamps (as tg_update_timestamps) and queue-name normalisation, one trigger call.
CREATE OR REPLACE FUNCTION app_jobs.tg_jobs_before_write()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.created_at := now();
    NEW.updated_at := now();
    IF NEW.queue_name IN ('', 'default') THEN
      NEW.queue_name := NULL;
    END IF;
  ELSE
    NEW.created_at := OLD.created_at;
    NEW.updated_at := greatest(now(), OLD.updated_at + interval '1 millisecond');
    IF NEW.queue_name IS DISTINCT FROM OLD.queue_name AND NEW.queue_name IN ('', 'default') THEN
      NEW.queue_name := NULL;
    END IF;
  END IF;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.tg_scheduled_jobs_before_write()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF NEW.queue_name IN ('', 'default') THEN
    NEW.queue_name := NULL;
  END IF;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.tg_increase_job_queue_count()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  INSERT INTO app_jobs.job_queues (queue_name, job_count)
  VALUES (NEW.queue_name, 1)
  ON CONFLICT (queue_name) DO UPDATE
    SET job_count = app_jobs.job_queues.job_count + 1;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.tg_decrease_job_queue_count()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  remaining integer;
BEGIN
  UPDATE app_jobs.job_queues
     SET job_count = job_count - 1
   WHERE queue_name = OLD.queue_name
  RETURNING job_count INTO remaining;
  IF remaining IS NOT NULL AND remaining <= 0 THEN
    DELETE FROM app_jobs.job_queues WHERE queue_name = OLD.queue_name;
  END IF;
  RETURN OLD;
END;
$$;

-- Triggers (dropped first so a 0.16.0 schema gets the new forms: statement-level NOTIFY).
DROP TRIGGER IF EXISTS _100_update_jobs_modtime_tg ON app_jobs.jobs;
DROP TRIGGER IF EXISTS _100_jobs_before_write ON app_jobs.jobs;
CREATE TRIGGER _100_jobs_before_write
  BEFORE INSERT OR UPDATE ON app_jobs.jobs
  FOR EACH ROW EXECUTE FUNCTION app_jobs.tg_jobs_before_write();

DROP TRIGGER IF EXISTS _500_increase_job_queue_count_on_insert ON app_jobs.jobs;
CREATE TRIGGER _500_increase_job_queue_count_on_insert
  AFTER INSERT ON app_jobs.jobs
  FOR EACH ROW WHEN (NEW.queue_name IS NOT NULL)
  EXECUTE FUNCTION app_jobs.tg_increase_job_queue_count();

DROP TRIGGER IF EXISTS _500_increase_job_queue_count_on_update ON app_jobs.jobs;
CREATE TRIGGER _500_increase_job_queue_count_on_update
  AFTER UPDATE OF queue_name ON app_jobs.jobs
  FOR EACH ROW WHEN (NEW.queue_name IS DISTINCT FROM OLD.queue_name AND NEW.queue_name IS NOT NULL)
  EXECUTE FUNCTION app_jobs.tg_increase_job_queue_count();

DROP TRIGGER IF EXISTS decrease_job_queue_count_on_delete ON app_jobs.jobs;
CREATE TRIGGER decrease_job_queue_count_on_delete
  AFTER DELETE ON app_jobs.jobs
  FOR EACH ROW WHEN (OLD.queue_name IS NOT NULL)
  EXECUTE FUNCTION app_jobs.tg_decrease_job_queue_count();

DROP TRIGGER IF EXISTS decrease_job_queue_count_on_update ON app_jobs.jobs;
CREATE TRIGGER decrease_job_queue_count_on_update
  AFTER UPDATE OF queue_name ON app_jobs.jobs
  FOR EACH ROW WHEN (NEW.queue_name IS DISTINCT FROM OLD.queue_name AND OLD.queue_name IS NOT NULL)
  EXECUTE FUNCTION app_jobs.tg_decrease_job_queue_count();

-- One notification per inserting statement (reference: one per row), delivered at commit.
DROP TRIGGER IF EXISTS _900_notify_worker ON app_jobs.jobs;
CREATE TRIGGER _900_notify_worker
  AFTER INSERT ON app_jobs.jobs
  FOR EACH STATEMENT EXECUTE FUNCTION app_jobs.do_notify('jobs:insert');

DROP TRIGGER IF EXISTS _100_scheduled_jobs_before_write ON app_jobs.scheduled_jobs;
CREATE TRIGGER _100_scheduled_jobs_before_write
  BEFORE INSERT OR UPDATE OF queue_name ON app_jobs.scheduled_jobs
  FOR EACH ROW EXECUTE FUNCTION app_jobs.tg_scheduled_jobs_before_write();

DROP TRIGGER IF EXISTS _900_notify_scheduled_job ON app_jobs.scheduled_jobs;
CREATE TRIGGER _900_notify_scheduled_job
  AFTER INSERT ON app_jobs.scheduled_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION app_jobs.do_notify('scheduled_jobs:insert');

-- ---------------------------------------------------------------------------------------------
-- Enqueueing
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
    -- Replace the waiting job of that key: new payload, attempts reset.
    INSERT INTO app_jobs.jobs AS j (database_id, actor_id, task_identifier, payload, queue_name,
                                    run_at, max_attempts, key, priority)
    VALUES (v_db, enqueue_job.actor_id, identifier, coalesce(payload, '{}'::json), v_queue,
            coalesce(run_at, now()), coalesce(max_attempts, 25), job_key, coalesce(priority, 0))
    ON CONFLICT (key) DO UPDATE
      SET database_id = EXCLUDED.database_id,
          actor_id = EXCLUDED.actor_id,
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
    -- The keyed job is running: it keeps running but loses the key (and is not retried);
    -- the replacement carries the key.
    UPDATE app_jobs.jobs AS j
       SET key = NULL, attempts = j.max_attempts
     WHERE j.key = job_key;
  END IF;
  INSERT INTO app_jobs.jobs (database_id, actor_id, task_identifier, payload, queue_name, run_at,
                             max_attempts, key, priority)
  VALUES (v_db, enqueue_job.actor_id, identifier, coalesce(payload, '{}'::json), v_queue,
          coalesce(run_at, now()), coalesce(max_attempts, 25), job_key, coalesce(priority, 0))
  RETURNING * INTO v_job;
  RETURN v_job;
END;
$$;

-- Reference form: explicit database id (NULL falls back to jwt.claims.database_id).
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
  SELECT * FROM app_jobs.enqueue_job(db_id, app_jobs.current_user_id(), identifier, payload,
                                     job_key, queue_name, run_at, max_attempts, priority)
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

-- Many jobs at once: a JSON array of objects with add_job's argument names (+ actor_id).
CREATE OR REPLACE FUNCTION app_jobs.add_jobs(jobs json)
RETURNS SETOF app_jobs.jobs
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_claim_db uuid := app_jobs.current_database_id();
  v_claim_actor uuid := app_jobs.current_user_id();
  v_item json;
BEGIN
  IF jobs IS NULL OR json_typeof(jobs) <> 'array' THEN
    RAISE EXCEPTION 'add_jobs(jobs): expected a JSON array of job objects, got %',
      coalesce(json_typeof(jobs), 'NULL') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR v_item IN SELECT e FROM json_array_elements(jobs) AS e LOOP
    IF json_typeof(v_item) <> 'object' THEN
      RAISE EXCEPTION 'add_jobs(jobs): every element must be a JSON object, got %',
        json_typeof(v_item) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(v_item ->> 'identifier', '') = '' THEN
      RAISE EXCEPTION 'add_jobs(jobs): element % has no "identifier"', v_item::text
        USING ERRCODE = 'not_null_violation';
    END IF;
    IF coalesce(v_item ->> 'db_id', '') = '' AND v_claim_db IS NULL THEN
      PERFORM app_jobs.require_database_id(NULL);
    END IF;
  END LOOP;

  -- Unkeyed jobs: one INSERT (one NOTIFY).
  RETURN QUERY
  INSERT INTO app_jobs.jobs (database_id, actor_id, task_identifier, payload, queue_name, run_at,
                             max_attempts, priority)
  SELECT coalesce((e ->> 'db_id')::uuid, v_claim_db),
         coalesce((e ->> 'actor_id')::uuid, v_claim_actor),
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

  -- Keyed jobs: the add_job replacement rules, one by one.
  RETURN QUERY
  SELECT k.*
    FROM json_array_elements(jobs) WITH ORDINALITY AS t(e, n)
   CROSS JOIN LATERAL app_jobs.enqueue_job(
           coalesce((e ->> 'db_id')::uuid, v_claim_db),
           coalesce((e ->> 'actor_id')::uuid, v_claim_actor),
           e ->> 'identifier',
           CASE WHEN json_typeof(e -> 'payload') = 'null' THEN NULL ELSE e -> 'payload' END,
           e ->> 'job_key',
           e ->> 'queue_name',
           (e ->> 'run_at')::timestamptz,
           (e ->> 'max_attempts')::integer,
           (e ->> 'priority')::integer) AS k
   WHERE e ->> 'job_key' IS NOT NULL
   ORDER BY n;
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
    ON CONFLICT (key) DO UPDATE
      SET database_id = EXCLUDED.database_id,
          actor_id = EXCLUDED.actor_id,
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
    DELETE FROM app_jobs.scheduled_jobs AS s WHERE s.key = job_key;
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
  SELECT * FROM app_jobs.enqueue_scheduled_job(db_id, app_jobs.current_user_id(), identifier,
                                               payload, schedule_info, job_key, queue_name,
                                               max_attempts, priority)
$$;

CREATE OR REPLACE FUNCTION app_jobs.add_scheduled_job(
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
  SELECT * FROM app_jobs.enqueue_scheduled_job(NULL, app_jobs.current_user_id(), identifier,
                                               payload, schedule_info, job_key, queue_name,
                                               max_attempts, priority)
$$;

-- ---------------------------------------------------------------------------------------------
-- Trigger helpers for user tables. Arguments: ('<database uuid>', '<task>', ...) or, without a
-- leading UUID, ('<task>', ...) with the database id from jwt.claims.database_id.
-- Payloads are built from the row with json functions (never SQL text).
-- ---------------------------------------------------------------------------------------------

-- TG_ARGV is indexed from 0; its elements are renumbered from 1 here.
CREATE OR REPLACE FUNCTION app_jobs.trigger_args(tg_args text[], OUT db_id uuid, OUT rest text[])
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
  args text[] := ARRAY(SELECT a FROM unnest(tg_args) WITH ORDINALITY AS u(a, n) ORDER BY n);
BEGIN
  IF coalesce(array_length(args, 1), 0) = 0 THEN
    RAISE EXCEPTION 'job trigger needs arguments: (''<database uuid>'', ''<task>'', ...) or (''<task>'', ...)'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF args[1] ~* '^\s*[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\s*$'
     OR args[1] ~* '^\s*\{[0-9a-f-]{32,36}\}\s*$' THEN
    db_id := btrim(args[1])::uuid;
    rest := args[2:];
    IF coalesce(array_length(rest, 1), 0) = 0 THEN
      RAISE EXCEPTION 'job trigger: a task name must follow the database id %', args[1]
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
  ELSE
    db_id := NULL;
    rest := args;
  END IF;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.tg_add_job_with_row_id()
RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_db uuid;
  v_rest text[];
  v_field text;
  v_row json;
BEGIN
  SELECT t.db_id, t.rest INTO v_db, v_rest FROM app_jobs.trigger_args(TG_ARGV) t;
  v_field := coalesce(v_rest[2], 'id');
  IF TG_OP = 'DELETE' THEN
    v_row := to_json(OLD);
  ELSE
    v_row := to_json(NEW);
  END IF;
  PERFORM app_jobs.enqueue_job(v_db, app_jobs.current_user_id(), v_rest[1],
                               json_build_object(v_field, v_row -> v_field),
                               NULL, NULL, NULL, NULL, NULL);
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.tg_add_job_with_row()
RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_db uuid;
  v_rest text[];
BEGIN
  SELECT t.db_id, t.rest INTO v_db, v_rest FROM app_jobs.trigger_args(TG_ARGV) t;
  IF TG_OP = 'DELETE' THEN
    PERFORM app_jobs.enqueue_job(v_db, app_jobs.current_user_id(), v_rest[1],
                                 to_json(OLD), NULL, NULL, NULL, NULL, NULL);
    RETURN OLD;
  END IF;
  PERFORM app_jobs.enqueue_job(v_db, app_jobs.current_user_id(), v_rest[1],
                               to_json(NEW), NULL, NULL, NULL, NULL, NULL);
  RETURN NEW;
END;
$$;

-- Payload {"<field>": "<value as text>", ...} (every value as text, as in the reference), from
-- the trigger arguments ([db id,] task, field1, field2, ...) and the row.
CREATE OR REPLACE FUNCTION app_jobs.enqueue_row_fields(tg_args text[], row_data jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_db uuid;
  v_rest text[];
  v_fields text[];
  v_values text[];
BEGIN
  SELECT t.db_id, t.rest INTO v_db, v_rest FROM app_jobs.trigger_args(tg_args) t;
  v_fields := v_rest[2:];
  SELECT coalesce(array_agg(row_data ->> f ORDER BY n), '{}')
    INTO v_values
    FROM unnest(v_fields) WITH ORDINALITY AS u(f, n);
  PERFORM app_jobs.enqueue_job(v_db, app_jobs.current_user_id(), v_rest[1],
                               json_object(coalesce(v_fields, '{}'), v_values),
                               NULL, NULL, NULL, NULL, NULL);
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.tg_add_job_with_fields()
RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM app_jobs.enqueue_row_fields(TG_ARGV, to_jsonb(OLD));
    RETURN OLD;
  END IF;
  PERFORM app_jobs.enqueue_row_fields(TG_ARGV, to_jsonb(NEW));
  RETURN NEW;
END;
$$;

-- The reference's name for tg_add_job_with_fields (its file was tg_add_job_with_fields.sql).
CREATE OR REPLACE FUNCTION app_jobs.trigger_job_with_fields()
RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM app_jobs.enqueue_row_fields(TG_ARGV, to_jsonb(OLD));
    RETURN OLD;
  END IF;
  PERFORM app_jobs.enqueue_row_fields(TG_ARGV, to_jsonb(NEW));
  RETURN NEW;
END;
$$;

-- Reference: built `SELECT json_build_object(...)` as text (SQL injection). Now: json_object.
CREATE OR REPLACE FUNCTION app_jobs.json_build_object_apply(arguments text[])
RETURNS json
LANGUAGE sql IMMUTABLE
AS $$ SELECT json_object(coalesce(arguments, '{}')) $$;

-- ---------------------------------------------------------------------------------------------
-- History
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.prune_job_history(older_than interval DEFAULT '7 days')
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
  WITH gone AS (
    DELETE FROM app_jobs.job_history WHERE finished_at < now() - older_than RETURNING 1
  )
  SELECT count(*) FROM gone
$$;

-- ---------------------------------------------------------------------------------------------
-- Claiming
-- ---------------------------------------------------------------------------------------------

-- Up to max_jobs runnable jobs in (priority, run_at, id) order, one statement, at most one
-- running job per queue. An expired lock (older than job_expiry) is claimable unless its worker
-- is registered in `workers` with a heartbeat younger than job_expiry, or the job awaits a
-- callback whose deadline has not passed.
CREATE OR REPLACE FUNCTION app_jobs.claim_jobs(
  worker_id text,
  task_identifiers text[] DEFAULT NULL,
  job_expiry interval DEFAULT '4 hours',
  max_jobs integer DEFAULT 1
)
RETURNS SETOF app_jobs.jobs
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
  IF worker_id IS NULL OR length(worker_id) < 4 THEN
    RAISE EXCEPTION 'INVALID_WORKER_ID' USING DETAIL = 'worker_id must be at least 4 characters';
  END IF;
  IF max_jobs IS NULL OR max_jobs < 1 THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH queue_heads AS MATERIALIZED (
    -- free queues with a runnable job, by their first job in claim order; only as many queue
    -- rows are locked as can be used
    SELECT q.queue_name, h.id
      FROM app_jobs.job_queues q
     CROSS JOIN LATERAL (
       SELECT j.id, j.priority, j.run_at
         FROM app_jobs.jobs j
        WHERE j.queue_name = q.queue_name
          AND j.locked_at IS NULL
          AND j.run_at <= now()
          AND j.attempts < j.max_attempts
          AND (task_identifiers IS NULL OR j.task_identifier = ANY (task_identifiers))
        ORDER BY j.priority, j.run_at, j.id
        LIMIT 1
     ) h
     WHERE q.locked_at IS NULL
        OR (q.locked_at < now() - job_expiry
            AND NOT EXISTS (SELECT 1 FROM app_jobs.workers w
                             WHERE w.worker_id = q.locked_by
                               AND w.last_seen_at > now() - job_expiry))
     ORDER BY h.priority, h.run_at, h.id
     LIMIT max_jobs
       FOR UPDATE OF q SKIP LOCKED
  ),
  unqueued AS MATERIALIZED (
    SELECT j.id, j.queue_name, j.priority, j.run_at
      FROM app_jobs.jobs j
     WHERE j.locked_at IS NULL
       AND j.queue_name IS NULL
       AND j.run_at <= now()
       AND j.attempts < j.max_attempts
       AND (task_identifiers IS NULL OR j.task_identifier = ANY (task_identifiers))
     ORDER BY j.priority, j.run_at, j.id
     LIMIT max_jobs
       FOR UPDATE SKIP LOCKED
  ),
  queued AS MATERIALIZED (
    SELECT j.id, j.queue_name, j.priority, j.run_at
      FROM app_jobs.jobs j
     WHERE j.id IN (SELECT qh.id FROM queue_heads qh)
       AND j.locked_at IS NULL
       FOR UPDATE SKIP LOCKED
  ),
  expired AS MATERIALIZED (
    SELECT j.id, j.queue_name, j.priority, j.run_at
      FROM app_jobs.jobs j
     WHERE j.locked_at < now() - job_expiry
       AND (j.locked_until IS NULL OR j.locked_until < now())
       AND j.run_at <= now()
       AND j.attempts < j.max_attempts
       AND (task_identifiers IS NULL OR j.task_identifier = ANY (task_identifiers))
       AND NOT EXISTS (SELECT 1 FROM app_jobs.workers w
                        WHERE w.worker_id = j.locked_by
                          AND w.last_seen_at > now() - job_expiry)
       AND (j.queue_name IS NULL
            OR EXISTS (SELECT 1 FROM app_jobs.job_queues q
                        WHERE q.queue_name = j.queue_name
                          AND (q.locked_at IS NULL
                               OR q.locked_by = j.locked_by
                               OR q.locked_at < now() - job_expiry)
                          FOR UPDATE SKIP LOCKED))
     ORDER BY j.priority, j.run_at, j.id
     LIMIT max_jobs
       FOR UPDATE OF j SKIP LOCKED
  ),
  chosen AS MATERIALIZED (
    SELECT c.id, c.queue_name
      FROM (
        SELECT a.*, row_number() OVER (PARTITION BY a.queue_name
                                       ORDER BY a.priority, a.run_at, a.id) AS rn
          FROM (SELECT * FROM unqueued
                UNION ALL SELECT * FROM queued
                UNION ALL SELECT * FROM expired) a
      ) c
     WHERE c.queue_name IS NULL OR c.rn = 1
     ORDER BY c.priority, c.run_at, c.id
     LIMIT max_jobs
  ),
  locked_queues AS (
    UPDATE app_jobs.job_queues q
       SET locked_at = now(), locked_by = claim_jobs.worker_id
      FROM chosen c
     WHERE q.queue_name = c.queue_name
  )
  UPDATE app_jobs.jobs j
     SET attempts = j.attempts + 1,
         locked_by = claim_jobs.worker_id,
         locked_at = now(),
         locked_until = NULL,
         progress = NULL,
         progress_message = NULL
    FROM chosen c
   WHERE j.id = c.id
  RETURNING j.*;
END;
$$;

-- Reference: one job (or a row of NULLs when there is none).
CREATE OR REPLACE FUNCTION app_jobs.get_job(
  worker_id text,
  task_identifiers text[] DEFAULT NULL,
  job_expiry interval DEFAULT '4 hours'
)
RETURNS app_jobs.jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  v_job app_jobs.jobs;
BEGIN
  IF worker_id IS NULL THEN
    RAISE EXCEPTION 'INVALID_WORKER_ID';
  END IF;
  SELECT * INTO v_job FROM app_jobs.claim_jobs(worker_id, task_identifiers, job_expiry, 1);
  RETURN v_job;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Finishing
-- ---------------------------------------------------------------------------------------------

-- Jobs locked by worker_id → history as completed (results[i] belongs to job_ids[i]).
CREATE OR REPLACE FUNCTION app_jobs.complete_locked_jobs(
  worker_id text,
  job_ids bigint[],
  results json[]
)
RETURNS SETOF app_jobs.jobs
LANGUAGE sql VOLATILE
AS $$
  WITH done AS (
    DELETE FROM app_jobs.jobs j
     WHERE j.id = ANY (job_ids)
       AND j.locked_by = worker_id
    RETURNING j.*
  ),
  unlocked AS (
    UPDATE app_jobs.job_queues q
       SET locked_at = NULL, locked_by = NULL
     WHERE q.queue_name IN (SELECT d.queue_name FROM done d WHERE d.queue_name IS NOT NULL)
       AND q.locked_by = worker_id
  ),
  input AS (
    SELECT DISTINCT ON (u.id) u.id, u.result
      FROM unnest(job_ids, results) AS u(id, result)
     ORDER BY u.id
  ),
  history AS (
    INSERT INTO app_jobs.job_history (
      job_id, database_id, actor_id, task_identifier, queue_name, payload, priority, key, status,
      attempts, max_attempts, result, last_error, worker_id, created_at, run_at, started_at,
      finished_at)
    SELECT d.id, d.database_id, d.actor_id, d.task_identifier, d.queue_name, d.payload,
           d.priority, d.key, 'completed', d.attempts, d.max_attempts, i.result, d.last_error,
           worker_id, d.created_at, d.run_at, d.locked_at, now()
      FROM done d
      LEFT JOIN input i ON i.id = d.id
    ON CONFLICT (job_id) DO UPDATE
      SET status = EXCLUDED.status, attempts = EXCLUDED.attempts, result = EXCLUDED.result,
          last_error = EXCLUDED.last_error, worker_id = EXCLUDED.worker_id,
          started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at
  )
  SELECT * FROM done
$$;

CREATE OR REPLACE FUNCTION app_jobs.complete_jobs(
  worker_id text,
  job_ids bigint[],
  results json[] DEFAULT NULL
)
RETURNS SETOF bigint
LANGUAGE sql VOLATILE
AS $$
  SELECT c.id FROM app_jobs.complete_locked_jobs(worker_id, job_ids, results) c
$$;

CREATE OR REPLACE FUNCTION app_jobs.complete_job(worker_id text, job_id bigint)
RETURNS app_jobs.jobs
LANGUAGE sql VOLATILE
AS $$
  SELECT * FROM app_jobs.complete_locked_jobs(worker_id, ARRAY[job_id], NULL)
$$;

-- Failing: per job, retry with backoff, or (not retryable / out of attempts) → history failed.
-- check_worker: only jobs locked by worker_id (the public functions always check).
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
                    + exp(least(j.attempts, 10)::double precision) * interval '1 second',
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

CREATE OR REPLACE FUNCTION app_jobs.fail_jobs(
  worker_id text,
  job_ids bigint[],
  error_messages text[],
  retryable boolean[] DEFAULT NULL
)
RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE sql VOLATILE
AS $$
  SELECT (f.job).id, f.outcome
    FROM app_jobs.fail_locked_jobs(worker_id, job_ids, error_messages, retryable, true) f
$$;

-- Reference signature; no longer STRICT (a NULL message fails the job as 'unknown error').
CREATE OR REPLACE FUNCTION app_jobs.fail_job(worker_id text, job_id bigint, error_message text)
RETURNS app_jobs.jobs
LANGUAGE sql VOLATILE CALLED ON NULL INPUT
AS $$
  SELECT (f.job).*
    FROM app_jobs.fail_locked_jobs(worker_id, ARRAY[job_id], ARRAY[error_message], NULL, true) f
$$;

-- ---------------------------------------------------------------------------------------------
-- Callbacks, progress, workers
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.await_callback(
  worker_id text,
  job_id bigint,
  deadline timestamptz
)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
  WITH hit AS (
    UPDATE app_jobs.jobs j
       SET locked_until = deadline
     WHERE j.id = job_id
       AND j.locked_by = worker_id
    RETURNING 1
  )
  SELECT EXISTS (SELECT 1 FROM hit)
$$;

CREATE OR REPLACE FUNCTION app_jobs.expire_callback_deadlines()
RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE sql VOLATILE
AS $$
  WITH late AS (
    SELECT array_agg(j.id) AS ids
      FROM app_jobs.jobs j
     WHERE j.locked_until < now()
       AND j.locked_by IS NOT NULL
  )
  SELECT (f.job).id, f.outcome
    FROM late,
         app_jobs.fail_locked_jobs(NULL, late.ids,
                                   array_fill('no callback before the deadline'::text,
                                              ARRAY[coalesce(cardinality(late.ids), 0)]),
                                   NULL, false) f
   WHERE late.ids IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION app_jobs.report_progress(
  worker_id text,
  job_id bigint,
  progress integer,
  message text
)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
  WITH hit AS (
    UPDATE app_jobs.jobs j
       SET progress = greatest(0, least(100, report_progress.progress)),
           progress_message = message
     WHERE j.id = job_id
       AND j.locked_by = worker_id
    RETURNING 1
  )
  SELECT EXISTS (SELECT 1 FROM hit)
$$;

CREATE OR REPLACE FUNCTION app_jobs.worker_heartbeat(worker_id text, info json DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
  INSERT INTO app_jobs.workers AS w (worker_id, started_at, last_seen_at, info)
  VALUES (worker_id, now(), now(), info)
  ON CONFLICT (worker_id) DO UPDATE
    SET last_seen_at = now(),
        info = coalesce(EXCLUDED.info, w.info)
$$;

CREATE OR REPLACE FUNCTION app_jobs.rescue_dead_workers(dead_after interval)
RETURNS TABLE (job_id bigint, worker_id text, outcome text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
  v_dead text[];
BEGIN
  WITH gone AS (
    DELETE FROM app_jobs.workers w
     WHERE w.last_seen_at < now() - dead_after
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
    SELECT array_agg(j.id) AS ids, array_agg('worker ' || j.locked_by || ' stopped responding') AS msgs,
           array_agg(j.locked_by) AS who
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

-- Reference: unlock every job of the worker (attempt not counted) and its queues.
CREATE OR REPLACE FUNCTION app_jobs.release_jobs(worker_id text)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
  WITH released AS (
    UPDATE app_jobs.jobs j
       SET locked_at = NULL,
           locked_by = NULL,
           locked_until = NULL,
           attempts = greatest(j.attempts - 1, 0)
     WHERE j.locked_by = worker_id
    RETURNING j.id
  )
  UPDATE app_jobs.job_queues q
     SET locked_at = NULL, locked_by = NULL
   WHERE q.locked_by = worker_id
$$;

-- Clean shutdown: release the worker's jobs (except those awaiting a callback, which stay
-- locked until their callback or deadline) and forget the worker.
CREATE OR REPLACE FUNCTION app_jobs.unregister_worker(worker_id text)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
  WITH released AS (
    UPDATE app_jobs.jobs j
       SET locked_at = NULL,
           locked_by = NULL,
           attempts = greatest(j.attempts - 1, 0)
     WHERE j.locked_by = worker_id
       AND j.locked_until IS NULL
    RETURNING j.queue_name
  ),
  queues AS (
    UPDATE app_jobs.job_queues q
       SET locked_at = NULL, locked_by = NULL
     WHERE q.locked_by = worker_id
       AND q.queue_name IN (SELECT r.queue_name FROM released r)
  )
  DELETE FROM app_jobs.workers w WHERE w.worker_id = unregister_worker.worker_id
$$;

-- ---------------------------------------------------------------------------------------------
-- Operations on jobs by id (reference forms; finished jobs move to history)
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.reschedule_jobs(
  job_ids bigint[],
  run_at timestamptz DEFAULT NULL,
  priority integer DEFAULT NULL,
  attempts integer DEFAULT NULL,
  max_attempts integer DEFAULT NULL
)
RETURNS SETOF app_jobs.jobs
LANGUAGE sql VOLATILE
AS $$
  UPDATE app_jobs.jobs j
     SET run_at = coalesce(reschedule_jobs.run_at, j.run_at),
         priority = coalesce(reschedule_jobs.priority, j.priority),
         attempts = coalesce(reschedule_jobs.attempts, j.attempts),
         max_attempts = coalesce(reschedule_jobs.max_attempts, j.max_attempts)
   WHERE j.id = ANY (job_ids)
     AND (j.locked_by IS NULL OR j.locked_at < now() - interval '4 hours')
  RETURNING j.*
$$;

-- Reference: marked exhausted in place. Now: moved to history as failed (and returned).
CREATE OR REPLACE FUNCTION app_jobs.permanently_fail_jobs(
  job_ids bigint[],
  error_message text DEFAULT NULL
)
RETURNS SETOF app_jobs.jobs
LANGUAGE sql VOLATILE
AS $$
  WITH target AS (
    SELECT array_agg(j.id) AS ids
      FROM app_jobs.jobs j
     WHERE j.id = ANY (job_ids)
       AND (j.locked_by IS NULL OR j.locked_at < now() - interval '4 hours')
  )
  SELECT (f.job).*
    FROM target t,
         app_jobs.fail_locked_jobs(NULL, t.ids,
                                   array_fill(coalesce(error_message, 'Manually marked as failed'),
                                              ARRAY[coalesce(cardinality(t.ids), 0)]),
                                   array_fill(false, ARRAY[coalesce(cardinality(t.ids), 0)]),
                                   false) f
   WHERE t.ids IS NOT NULL
$$;

-- Reference: deleted unlocked (or >4 h locked) jobs. Now: they move to history as completed.
CREATE OR REPLACE FUNCTION app_jobs.complete_jobs(job_ids bigint[])
RETURNS SETOF app_jobs.jobs
LANGUAGE sql VOLATILE
AS $$
  WITH done AS (
    DELETE FROM app_jobs.jobs j
     WHERE j.id = ANY (job_ids)
       AND (j.locked_by IS NULL OR j.locked_at < now() - interval '4 hours')
    RETURNING j.*
  ),
  unlocked AS (
    UPDATE app_jobs.job_queues q
       SET locked_at = NULL, locked_by = NULL
      FROM done d
     WHERE q.queue_name = d.queue_name
       AND q.locked_by = d.locked_by
  ),
  history AS (
    INSERT INTO app_jobs.job_history (
      job_id, database_id, actor_id, task_identifier, queue_name, payload, priority, key, status,
      attempts, max_attempts, result, last_error, worker_id, created_at, run_at, started_at,
      finished_at)
    SELECT d.id, d.database_id, d.actor_id, d.task_identifier, d.queue_name, d.payload,
           d.priority, d.key, 'completed', d.attempts, d.max_attempts, NULL, d.last_error,
           d.locked_by, d.created_at, d.run_at, d.locked_at, now()
      FROM done d
    ON CONFLICT (job_id) DO UPDATE
      SET status = EXCLUDED.status, attempts = EXCLUDED.attempts, result = EXCLUDED.result,
          last_error = EXCLUDED.last_error, worker_id = EXCLUDED.worker_id,
          started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at
  )
  SELECT * FROM done
$$;

-- A person retries a failed job: back from history into jobs (same id), attempts 0, run now.
CREATE OR REPLACE FUNCTION app_jobs.retry_failed_job(job_id bigint)
RETURNS app_jobs.jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  v_hist app_jobs.job_history;
  v_job app_jobs.jobs;
BEGIN
  DELETE FROM app_jobs.job_history h
   WHERE h.job_id = retry_failed_job.job_id AND h.status = 'failed'
  RETURNING * INTO v_hist;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'job % is not a failed job in job_history', retry_failed_job.job_id
      USING ERRCODE = 'no_data_found';
  END IF;
  INSERT INTO app_jobs.jobs (id, database_id, actor_id, task_identifier, payload, queue_name,
                             priority, run_at, attempts, max_attempts, key, last_error)
  VALUES (v_hist.job_id, v_hist.database_id, v_hist.actor_id, v_hist.task_identifier,
          v_hist.payload, v_hist.queue_name, v_hist.priority, now(), 0, v_hist.max_attempts,
          v_hist.key, v_hist.last_error)
  RETURNING * INTO v_job;
  RETURN v_job;
END;
$$;

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
LANGUAGE sql STABLE
AS $$
  SELECT j.id, CASE WHEN j.locked_at IS NULL THEN 'queued' ELSE 'running' END,
         j.task_identifier, j.attempts, j.max_attempts, j.last_error, NULL::json, j.progress,
         j.progress_message, j.run_at, j.locked_by, j.created_at, NULL::timestamptz
    FROM app_jobs.jobs j
   WHERE j.id = job_status.job_id
  UNION ALL
  SELECT h.job_id, h.status, h.task_identifier, h.attempts, h.max_attempts, h.last_error,
         h.result, NULL::smallint, NULL::text, h.run_at, h.worker_id, h.created_at, h.finished_at
    FROM app_jobs.job_history h
   WHERE h.job_id = job_status.job_id
   LIMIT 1
$$;

-- ---------------------------------------------------------------------------------------------
-- Scheduled jobs (reference forms)
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app_jobs.get_scheduled_job(
  worker_id text,
  task_identifiers text[] DEFAULT NULL
)
RETURNS app_jobs.scheduled_jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  v_row app_jobs.scheduled_jobs;
BEGIN
  IF worker_id IS NULL THEN
    RAISE EXCEPTION 'INVALID_WORKER_ID';
  END IF;
  UPDATE app_jobs.scheduled_jobs s
     SET locked_by = get_scheduled_job.worker_id, locked_at = now()
   WHERE s.id = (
     SELECT c.id
       FROM app_jobs.scheduled_jobs c
      WHERE c.locked_at IS NULL
        AND (task_identifiers IS NULL OR c.task_identifier = ANY (task_identifiers))
      ORDER BY c.priority, c.id
      LIMIT 1
        FOR UPDATE SKIP LOCKED)
  RETURNING * INTO v_row;
  RETURN v_row;
END;
$$;

CREATE OR REPLACE FUNCTION app_jobs.release_scheduled_jobs(worker_id text, ids bigint[] DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
  UPDATE app_jobs.scheduled_jobs s
     SET locked_at = NULL, locked_by = NULL
   WHERE s.locked_by = worker_id
     AND (ids IS NULL OR s.id = ANY (ids))
$$;

-- Spawn the job of a schedule. ALREADY_SCHEDULED while the previous job is still pending:
-- it exists and is not exhausted, and its lock (if any) is not stale (older than job_expiry,
-- held by a worker without a fresh heartbeat). A keyed schedule replaces its waiting job.
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
  ON CONFLICT (key) DO UPDATE
    SET database_id = EXCLUDED.database_id,
        actor_id = EXCLUDED.actor_id,
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
    -- A job with the schedule's key is running.
    RAISE EXCEPTION 'ALREADY_SCHEDULED';
  END IF;
  UPDATE app_jobs.scheduled_jobs s
     SET last_scheduled = now(), last_scheduled_id = v_job.id
   WHERE s.id = v_sched.id;
  RETURN v_job;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Adopting a 0.16.0 database: normalise queue names, move exhausted jobs to history.
-- ---------------------------------------------------------------------------------------------

UPDATE app_jobs.jobs SET queue_name = NULL WHERE queue_name IN ('', 'default');
UPDATE app_jobs.scheduled_jobs SET queue_name = NULL WHERE queue_name IN ('', 'default');

WITH exhausted AS (
  DELETE FROM app_jobs.jobs j
   WHERE j.locked_at IS NULL AND j.attempts >= j.max_attempts
  RETURNING j.*
)
INSERT INTO app_jobs.job_history (
  job_id, database_id, actor_id, task_identifier, queue_name, payload, priority, key, status,
  attempts, max_attempts, result, last_error, worker_id, created_at, run_at, started_at,
  finished_at)
SELECT e.id, e.database_id, e.actor_id, e.task_identifier, e.queue_name, e.payload, e.priority,
       e.key, 'failed', e.attempts, e.max_attempts, NULL, e.last_error, NULL, e.created_at,
       e.run_at, NULL, coalesce(e.updated_at, now())
  FROM exhausted e
ON CONFLICT (job_id) DO NOTHING;

-- ---------------------------------------------------------------------------------------------
-- Privileges. Roles are created when missing and the migrating user may create roles;
-- otherwise the grants to the missing role are skipped with a NOTICE.
-- ---------------------------------------------------------------------------------------------

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
    GRANT SELECT, INSERT, UPDATE, DELETE
      ON app_jobs.jobs, app_jobs.scheduled_jobs, app_jobs.job_queues, app_jobs.job_history,
         app_jobs.workers
      TO administrator;
    GRANT USAGE, SELECT ON SEQUENCE app_jobs.jobs_id_seq, app_jobs.scheduled_jobs_id_seq
      TO administrator;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA app_jobs TO administrator;
    ALTER DEFAULT PRIVILEGES IN SCHEMA app_jobs GRANT EXECUTE ON FUNCTIONS TO administrator;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
    GRANT USAGE ON SCHEMA app_jobs TO authenticated;
    GRANT EXECUTE ON FUNCTION
      app_jobs.add_job(uuid, text, json, text, text, timestamptz, integer, integer),
      app_jobs.add_job(text, json, text, text, timestamptz, integer, integer),
      app_jobs.add_jobs(json),
      app_jobs.add_scheduled_job(uuid, text, json, json, text, text, integer, integer),
      app_jobs.add_scheduled_job(text, json, json, text, text, integer, integer)
      TO authenticated;
  END IF;
END;
$grants$;
