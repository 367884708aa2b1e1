-- The shape of @pgpm/database-jobs 0.16.0, rebuilt from its published description
-- for the adoption test: tables, constraints, indexes, triggers and the functions with their
-- 0.16.0 signatures and behaviour (defects included: STRICT fail_job, unkeyed replacement,
-- random-UUID queue default, row-level NOTIFY, no sequence grants).
-- Needs the role `administrator`. PostgreSQL 13+ (gen_random_uuid is built in).

CREATE SCHEMA IF NOT EXISTS app_jobs;
GRANT USAGE ON SCHEMA app_jobs TO administrator;
ALTER DEFAULT PRIVILEGES IN SCHEMA app_jobs GRANT EXECUTE ON FUNCTIONS TO administrator;

CREATE TABLE app_jobs.jobs (
  id bigserial PRIMARY KEY,
  database_id uuid NOT NULL,
  queue_name text DEFAULT (gen_random_uuid())::text,
  task_identifier text NOT NULL,
  payload json DEFAULT '{}'::json NOT NULL,
  priority integer DEFAULT 0 NOT NULL,
  run_at timestamptz DEFAULT now() NOT NULL,
  attempts integer DEFAULT 0 NOT NULL,
  max_attempts integer DEFAULT 25 NOT NULL,
  key text,
  last_error text,
  locked_at timestamptz,
  locked_by text,
  updated_at timestamptz DEFAULT now(),
  CHECK (length(key) < 513),
  CHECK (length(task_identifier) < 127),
  CHECK (max_attempts > 0),
  CHECK (length(queue_name) < 127),
  CHECK (length(locked_by) > 3),
  UNIQUE (key)
);
ALTER TABLE app_jobs.jobs ADD COLUMN created_at timestamptz DEFAULT now();
CREATE INDEX priority_run_at_id_idx ON app_jobs.jobs (priority, run_at, id);
CREATE INDEX jobs_locked_by_idx ON app_jobs.jobs (locked_by);

CREATE TABLE app_jobs.scheduled_jobs (
  id bigserial PRIMARY KEY,
  database_id uuid NOT NULL,
  queue_name text DEFAULT (gen_random_uuid())::text,
  task_identifier text NOT NULL,
  payload json DEFAULT '{}'::json NOT NULL,
  priority integer DEFAULT 0 NOT NULL,
  max_attempts integer DEFAULT 25 NOT NULL,
  key text,
  locked_at timestamptz,
  locked_by text,
  schedule_info json NOT NULL,
  last_scheduled timestamptz,
  last_scheduled_id bigint,
  CHECK (length(key) < 513),
  CHECK (length(task_identifier) < 127),
  CHECK (max_attempts > 0),
  CHECK (length(queue_name) < 127),
  CHECK (length(locked_by) > 3),
  UNIQUE (key)
);
CREATE INDEX scheduled_jobs_priority_id_idx ON app_jobs.scheduled_jobs (priority, id);
CREATE INDEX scheduled_jobs_locked_by_idx ON app_jobs.scheduled_jobs (locked_by);

CREATE TABLE app_jobs.job_queues (
  queue_name text NOT NULL PRIMARY KEY,
  job_count integer DEFAULT 0 NOT NULL,
  locked_at timestamptz,
  locked_by text
);
CREATE INDEX job_queues_locked_by_idx ON app_jobs.job_queues (locked_by);

GRANT SELECT, INSERT, UPDATE, DELETE
  ON app_jobs.scheduled_jobs, app_jobs.jobs, app_jobs.job_queues TO administrator;

CREATE FUNCTION app_jobs.do_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], '');
  RETURN NEW;
END;
$$;

CREATE FUNCTION app_jobs.tg_update_timestamps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.created_at = now();
    NEW.updated_at = now();
  ELSIF TG_OP = 'UPDATE' THEN
    NEW.created_at = OLD.created_at;
    NEW.updated_at = greatest(now(), OLD.updated_at + interval '1 millisecond');
  END IF;
  RETURN NEW;
END;
$$;

CREATE FUNCTION app_jobs.tg_increase_job_queue_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app_jobs.job_queues (queue_name, job_count) VALUES (NEW.queue_name, 1)
  ON CONFLICT (queue_name) DO UPDATE SET job_count = job_queues.job_count + 1;
  RETURN NEW;
END;
$$;

CREATE FUNCTION app_jobs.tg_decrease_job_queue_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_new_job_count int;
BEGIN
  UPDATE app_jobs.job_queues SET job_count = job_queues.job_count - 1
   WHERE queue_name = OLD.queue_name
  RETURNING job_count INTO v_new_job_count;
  IF v_new_job_count <= 0 THEN
    DELETE FROM app_jobs.job_queues WHERE queue_name = OLD.queue_name AND job_count <= 0;
  END IF;
  RETURN OLD;
END;
$$;

CREATE TRIGGER _100_update_jobs_modtime_tg BEFORE INSERT OR UPDATE ON app_jobs.jobs
  FOR EACH ROW EXECUTE PROCEDURE app_jobs.tg_update_timestamps();
CREATE TRIGGER _500_increase_job_queue_count_on_insert AFTER INSERT ON app_jobs.jobs
  FOR EACH ROW WHEN (NEW.queue_name IS NOT NULL)
  EXECUTE PROCEDURE app_jobs.tg_increase_job_queue_count();
CREATE TRIGGER _500_increase_job_queue_count_on_update AFTER UPDATE OF queue_name ON app_jobs.jobs
  FOR EACH ROW WHEN (NEW.queue_name IS DISTINCT FROM OLD.queue_name AND NEW.queue_name IS NOT NULL)
  EXECUTE PROCEDURE app_jobs.tg_increase_job_queue_count();
CREATE TRIGGER _900_notify_worker AFTER INSERT ON app_jobs.jobs
  FOR EACH ROW EXECUTE PROCEDURE app_jobs.do_notify('jobs:insert');
CREATE TRIGGER decrease_job_queue_count_on_delete AFTER DELETE ON app_jobs.jobs
  FOR EACH ROW WHEN (OLD.queue_name IS NOT NULL)
  EXECUTE PROCEDURE app_jobs.tg_decrease_job_queue_count();
CREATE TRIGGER decrease_job_queue_count_on_update AFTER UPDATE OF queue_name ON app_jobs.jobs
  FOR EACH ROW WHEN (NEW.queue_name IS DISTINCT FROM OLD.queue_name AND OLD.queue_name IS NOT NULL)
  EXECUTE PROCEDURE app_jobs.tg_decrease_job_queue_count();
CREATE TRIGGER _900_notify_scheduled_job AFTER INSERT ON app_jobs.scheduled_jobs
  FOR EACH ROW EXECUTE PROCEDURE app_jobs.do_notify('scheduled_jobs:insert');

CREATE FUNCTION app_jobs.add_job(
  db_id uuid, identifier text, payload json DEFAULT '{}'::json, job_key text DEFAULT NULL,
  queue_name text DEFAULT NULL, run_at timestamptz DEFAULT now(), max_attempts integer DEFAULT 25,
  priority integer DEFAULT 0
) RETURNS app_jobs.jobs LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
  v_job app_jobs.jobs;
BEGIN
  IF job_key IS NOT NULL THEN
    INSERT INTO app_jobs.jobs (database_id, task_identifier, payload, queue_name, run_at,
                               max_attempts, key, priority)
    VALUES (db_id, identifier, coalesce(payload, '{}'::json), queue_name,
            coalesce(run_at, now()), coalesce(max_attempts, 25), job_key, coalesce(priority, 0))
    ON CONFLICT (key) DO UPDATE SET
      task_identifier = excluded.task_identifier, payload = excluded.payload,
      queue_name = excluded.queue_name, max_attempts = excluded.max_attempts,
      run_at = excluded.run_at, priority = excluded.priority, attempts = 0, last_error = NULL
    WHERE jobs.locked_at IS NULL
    RETURNING * INTO v_job;
    IF FOUND THEN
      RETURN v_job;
    END IF;
    UPDATE app_jobs.jobs SET key = NULL, attempts = jobs.max_attempts WHERE key = job_key;
  END IF;
  INSERT INTO app_jobs.jobs (database_id, task_identifier, payload, queue_name, run_at,
                             max_attempts, priority)
  VALUES (db_id, identifier, payload, queue_name, run_at, max_attempts, priority)
  RETURNING * INTO v_job;
  RETURN v_job;
END;
$$;

CREATE FUNCTION app_jobs.add_scheduled_job(
  db_id uuid, identifier text, payload json DEFAULT '{}'::json,
  schedule_info json DEFAULT '{}'::json, job_key text DEFAULT NULL, queue_name text DEFAULT NULL,
  max_attempts integer DEFAULT 25, priority integer DEFAULT 0
) RETURNS app_jobs.scheduled_jobs LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
  v_job app_jobs.scheduled_jobs;
BEGIN
  IF job_key IS NOT NULL THEN
    INSERT INTO app_jobs.scheduled_jobs (database_id, task_identifier, payload, queue_name,
                                         schedule_info, max_attempts, key, priority)
    VALUES (db_id, identifier, coalesce(payload, '{}'::json), queue_name, schedule_info,
            coalesce(max_attempts, 25), job_key, coalesce(priority, 0))
    ON CONFLICT (key) DO UPDATE SET
      task_identifier = excluded.task_identifier, payload = excluded.payload,
      queue_name = excluded.queue_name, max_attempts = excluded.max_attempts,
      schedule_info = excluded.schedule_info, priority = excluded.priority
    WHERE scheduled_jobs.locked_at IS NULL
    RETURNING * INTO v_job;
    IF FOUND THEN
      RETURN v_job;
    END IF;
    DELETE FROM app_jobs.scheduled_jobs WHERE key = job_key;
  END IF;
  INSERT INTO app_jobs.scheduled_jobs (database_id, task_identifier, payload, queue_name,
                                       schedule_info, max_attempts, priority)
  VALUES (db_id, identifier, payload, queue_name, schedule_info, max_attempts, priority)
  RETURNING * INTO v_job;
  RETURN v_job;
END;
$$;

CREATE FUNCTION app_jobs.get_job(
  worker_id text, task_identifiers text[] DEFAULT NULL, job_expiry interval DEFAULT '4 hours'
) RETURNS app_jobs.jobs LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_job_id bigint;
  v_queue_name text;
  v_row app_jobs.jobs;
  v_now timestamptz = now();
BEGIN
  IF worker_id IS NULL THEN
    RAISE EXCEPTION 'INVALID_WORKER_ID';
  END IF;
  SELECT jobs.queue_name, jobs.id INTO v_queue_name, v_job_id
    FROM app_jobs.jobs
   WHERE (jobs.locked_at IS NULL OR jobs.locked_at < (v_now - job_expiry))
     AND (jobs.queue_name IS NULL OR EXISTS (
           SELECT 1 FROM app_jobs.job_queues
            WHERE job_queues.queue_name = jobs.queue_name
              AND (job_queues.locked_at IS NULL OR job_queues.locked_at < (v_now - job_expiry))
              FOR UPDATE SKIP LOCKED))
     AND run_at <= v_now
     AND attempts < max_attempts
     AND (task_identifiers IS NULL OR task_identifier = ANY (task_identifiers))
   ORDER BY jobs.priority ASC, jobs.run_at ASC, jobs.id ASC
   LIMIT 1
     FOR UPDATE SKIP LOCKED;
  IF v_job_id IS NULL THEN
    RETURN NULL;
  END IF;
  IF v_queue_name IS NOT NULL THEN
    UPDATE app_jobs.job_queues SET locked_by = get_job.worker_id, locked_at = v_now
     WHERE job_queues.queue_name = v_queue_name;
  END IF;
  UPDATE app_jobs.jobs SET attempts = attempts + 1, locked_by = get_job.worker_id,
         locked_at = v_now
   WHERE id = v_job_id
  RETURNING * INTO v_row;
  RETURN v_row;
END;
$$;

CREATE FUNCTION app_jobs.complete_job(worker_id text, job_id bigint)
RETURNS app_jobs.jobs LANGUAGE plpgsql AS $$
DECLARE
  v_row app_jobs.jobs;
BEGIN
  DELETE FROM app_jobs.jobs WHERE id = job_id RETURNING * INTO v_row;
  IF v_row.queue_name IS NOT NULL THEN
    UPDATE app_jobs.job_queues SET locked_by = NULL, locked_at = NULL
     WHERE queue_name = v_row.queue_name AND locked_by = worker_id;
  END IF;
  RETURN v_row;
END;
$$;

CREATE FUNCTION app_jobs.fail_job(worker_id text, job_id bigint, error_message text)
RETURNS app_jobs.jobs LANGUAGE plpgsql STRICT AS $$
DECLARE
  v_row app_jobs.jobs;
BEGIN
  UPDATE app_jobs.jobs
     SET last_error = error_message,
         run_at = greatest(now(), run_at) + (exp(least(attempts, 10))::text || ' seconds')::interval,
         locked_by = NULL, locked_at = NULL
   WHERE id = job_id AND locked_by = worker_id
  RETURNING * INTO v_row;
  IF v_row.queue_name IS NOT NULL THEN
    UPDATE app_jobs.job_queues SET locked_by = NULL, locked_at = NULL
     WHERE queue_name = v_row.queue_name AND locked_by = worker_id;
  END IF;
  RETURN v_row;
END;
$$;

CREATE FUNCTION app_jobs.get_scheduled_job(worker_id text, task_identifiers text[] DEFAULT NULL)
RETURNS app_jobs.scheduled_jobs LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_job_id bigint;
  v_row app_jobs.scheduled_jobs;
BEGIN
  IF worker_id IS NULL THEN
    RAISE EXCEPTION 'INVALID_WORKER_ID';
  END IF;
  SELECT scheduled_jobs.id INTO v_job_id FROM app_jobs.scheduled_jobs
   WHERE scheduled_jobs.locked_at IS NULL
     AND (task_identifiers IS NULL OR task_identifier = ANY (task_identifiers))
   ORDER BY scheduled_jobs.priority ASC, scheduled_jobs.id ASC
   LIMIT 1 FOR UPDATE SKIP LOCKED;
  IF v_job_id IS NULL THEN
    RETURN NULL;
  END IF;
  UPDATE app_jobs.scheduled_jobs SET locked_by = get_scheduled_job.worker_id, locked_at = now()
   WHERE id = v_job_id RETURNING * INTO v_row;
  RETURN v_row;
END;
$$;

CREATE FUNCTION app_jobs.run_scheduled_job(id bigint, job_expiry interval DEFAULT '1 hours')
RETURNS app_jobs.jobs LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  j app_jobs.jobs;
  last_id bigint;
  lkd_by text;
BEGIN
  SELECT last_scheduled_id INTO last_id FROM app_jobs.scheduled_jobs s
   WHERE s.id = run_scheduled_job.id;
  IF last_id IS NOT NULL THEN
    SELECT locked_by INTO lkd_by FROM app_jobs.jobs WHERE jobs.id = last_id
       AND (locked_at IS NULL OR locked_at >= now() - job_expiry);
    IF FOUND THEN
      RAISE EXCEPTION 'ALREADY_SCHEDULED';
    END IF;
  END IF;
  INSERT INTO app_jobs.jobs (database_id, queue_name, task_identifier, payload, priority,
                             max_attempts, key)
  SELECT database_id, queue_name, task_identifier, payload, priority, max_attempts, key
    FROM app_jobs.scheduled_jobs s WHERE s.id = run_scheduled_job.id
  RETURNING * INTO j;
  UPDATE app_jobs.scheduled_jobs s SET last_scheduled = now(), last_scheduled_id = j.id
   WHERE s.id = run_scheduled_job.id;
  RETURN j;
END;
$$;

CREATE FUNCTION app_jobs.release_jobs(worker_id text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  UPDATE app_jobs.jobs SET locked_at = NULL, locked_by = NULL,
         attempts = GREATEST(attempts - 1, 0)
   WHERE locked_by = worker_id;
  UPDATE app_jobs.job_queues SET locked_at = NULL, locked_by = NULL WHERE locked_by = worker_id;
END;
$$;

CREATE FUNCTION app_jobs.release_scheduled_jobs(worker_id text, ids bigint[] DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  UPDATE app_jobs.scheduled_jobs s SET locked_at = NULL, locked_by = NULL
   WHERE locked_by = worker_id AND (ids IS NULL OR s.id = ANY (ids));
END;
$$;

CREATE FUNCTION app_jobs.reschedule_jobs(
  job_ids bigint[], run_at timestamptz DEFAULT NULL, priority integer DEFAULT NULL,
  attempts integer DEFAULT NULL, max_attempts integer DEFAULT NULL
) RETURNS SETOF app_jobs.jobs LANGUAGE sql AS $$
  UPDATE app_jobs.jobs
     SET run_at = coalesce(reschedule_jobs.run_at, jobs.run_at),
         priority = coalesce(reschedule_jobs.priority, jobs.priority),
         attempts = coalesce(reschedule_jobs.attempts, jobs.attempts),
         max_attempts = coalesce(reschedule_jobs.max_attempts, jobs.max_attempts)
   WHERE id = ANY (job_ids)
     AND (locked_by IS NULL OR locked_at < now() - interval '4 hours')
  RETURNING *;
$$;

CREATE FUNCTION app_jobs.permanently_fail_jobs(job_ids bigint[], error_message text DEFAULT NULL)
RETURNS SETOF app_jobs.jobs LANGUAGE sql AS $$
  UPDATE app_jobs.jobs
     SET last_error = coalesce(error_message, 'Manually marked as failed'),
         attempts = max_attempts
   WHERE id = ANY (job_ids)
     AND (locked_by IS NULL OR locked_at < now() - interval '4 hours')
  RETURNING *;
$$;

CREATE FUNCTION app_jobs.complete_jobs(job_ids bigint[])
RETURNS SETOF app_jobs.jobs LANGUAGE sql AS $$
  DELETE FROM app_jobs.jobs
   WHERE id = ANY (job_ids)
     AND (locked_by IS NULL OR locked_at < now() - interval '4 hours')
  RETURNING *;
$$;

-- The reference builds SQL text here (SQL injection); reproduced for the shape only.
CREATE FUNCTION app_jobs.json_build_object_apply(arguments text[])
RETURNS json LANGUAGE plpgsql AS $$
DECLARE
  arg text;
  _sql text;
  _res json;
  args text[];
BEGIN
  _sql = 'SELECT json_build_object(';
  FOR arg IN SELECT unnest(arguments) LOOP
    args = array_append(args, format('''%s''', arg));
  END LOOP;
  _sql = _sql || array_to_string(args, ',') || ');';
  EXECUTE _sql INTO _res;
  RETURN _res;
END;
$$;

CREATE FUNCTION app_jobs.tg_add_job_with_row_id() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF tg_op = 'INSERT' THEN
    PERFORM app_jobs.add_job(NULL::uuid, tg_argv[0], json_build_object('id', NEW.id));
    RETURN NEW;
  END IF;
  PERFORM app_jobs.add_job(NULL::uuid, tg_argv[0], json_build_object('id', OLD.id));
  RETURN OLD;
END;
$$;

CREATE FUNCTION app_jobs.tg_add_job_with_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF tg_op = 'INSERT' OR tg_op = 'UPDATE' THEN
    PERFORM app_jobs.add_job(NULL::uuid, tg_argv[0], to_json(NEW));
    RETURN NEW;
  END IF;
  PERFORM app_jobs.add_job(NULL::uuid, tg_argv[0], to_json(OLD));
  RETURN OLD;
END;
$$;

CREATE FUNCTION app_jobs.trigger_job_with_fields() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  RETURN NEW;
END;
$$;
