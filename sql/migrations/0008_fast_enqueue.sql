-- 0008_fast_enqueue: what enqueueing costs the server, cut without changing any argument,
-- result, rule or message.
--
-- add_jobs (0002) walked the array in PL/pgSQL to check each element (every `->>` on json
-- re-parses the element) and then read it again with json_array_elements and `->>` for each of
-- nine fields: about half of its server time, and its exception block wrapped the insert, so
-- every call used a subtransaction id. Now:
--
-- * json_to_recordset reads the elements into typed columns (one parse per pass);
-- * one read-only pass, inside the exception block, reads every field and answers "is any
--   element refused?" and "is any keyed?". Only when an element is refused (or a field cannot
--   be read) does the element-by-element check of 0002 run (add_jobs_refusal), and it reports
--   the first refused element as before: the element (from 1), then the field;
-- * the unkeyed jobs are one INSERT (one NOTIFY), outside the exception block; the keyed jobs
--   still go one by one through enqueue_job (the key replacement rules), only when there are any.
--
-- add_job (both forms): PL/pgSQL instead of SQL. A SQL function that cannot be inlined (add_job
-- is SECURITY DEFINER) plans its body again on every call; PL/pgSQL keeps its plans for the
-- session. enqueue_job reads the claims only when no database id is given.
--
-- Functions here carry their whole definition; later migrations that change one of them start
-- from this file.

-- The first field of an add_jobs array that cannot be read (elements in order, fields in the
-- order of add_job's arguments), with the error reading it raises; all NULL when every field
-- can be read. The error path of add_jobs only: one subtransaction per field tried.
CREATE OR REPLACE FUNCTION app_jobs.add_jobs_unreadable(
  jobs json,
  OUT place text,
  OUT state text,
  OUT message text
)
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
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        place := 'element ' || v_n || ' (from 1), field "' || v_field || '"';
        RETURN;
      END;
    END LOOP;
  END LOOP;
END;
$$;

-- The element-by-element rules of add_jobs (its error path only): raises the first refused
-- element's error (not an object, no identifier, no database id, another tenant's db_id or
-- actor_id, a field that cannot be read), naming the element (from 1) and the field; returns
-- when every element passes.
CREATE OR REPLACE FUNCTION app_jobs.add_jobs_refusal(jobs json)
RETURNS void
LANGUAGE plpgsql VOLATILE
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
  EXCEPTION WHEN data_exception THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
    IF v_message LIKE 'add_jobs(jobs):%' THEN
      RAISE;
    END IF;
    SELECT u.place, coalesce(u.state, v_state), coalesce(u.message, v_message)
      INTO v_where, v_state, v_message
      FROM app_jobs.add_jobs_unreadable(jobs) AS u;
    RAISE EXCEPTION 'add_jobs(jobs): %: %', coalesce(v_where, 'an element'), v_message
      USING ERRCODE = v_state;
  END;
END;
$$;

-- Many jobs at once: a JSON array of objects with add_job's argument names (+ actor_id).
-- db_id / actor_id default to the claims; a caller that is not an administrator may not set
-- them to anything else than its claims. Returns the unkeyed jobs in the array's order, then
-- the keyed ones in the array's order.
CREATE OR REPLACE FUNCTION app_jobs.add_jobs(jobs json)
RETURNS SETOF app_jobs.jobs
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_claim_db uuid := app_jobs.current_database_id();
  v_claim_actor uuid := app_jobs.current_user_id();
  v_refused boolean;
  v_keyed boolean;
  v_ids bigint;
  v_state text;
  v_message text;
  v_where text;
BEGIN
  IF jobs IS NULL OR json_typeof(jobs) <> 'array' THEN
    RAISE EXCEPTION 'add_jobs(jobs): expected a JSON array of job objects, got %',
      coalesce(json_typeof(jobs), 'NULL') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- One read-only pass over the elements: can every field be read, is any element refused
  -- (the rules of add_jobs_refusal), is any keyed? The administrator check runs at most once,
  -- and only for an element that needs it. The pass writes nothing, so its exception block
  -- costs no transaction id: many add_jobs calls in one transaction stay cheap.
  BEGIN
    SELECT coalesce(bool_or(
             coalesce(r.identifier, '') = ''
             OR (nullif(r.db_id, '') IS NULL AND v_claim_db IS NULL)
             OR (v_claim_db IS NOT NULL AND nullif(r.db_id, '')::uuid <> v_claim_db
                 AND NOT (SELECT app_jobs.caller_is_admin()))
             OR (nullif(r.actor_id, '')::uuid IS DISTINCT FROM v_claim_actor
                 AND nullif(r.actor_id, '') IS NOT NULL
                 AND NOT (SELECT app_jobs.caller_is_admin()))), false),
           coalesce(bool_or(r.job_key IS NOT NULL), false),
           count(nullif(r.db_id, '')::uuid) + count(nullif(r.actor_id, '')::uuid)
      INTO v_refused, v_keyed, v_ids  -- (the counts read every db_id and actor_id as a uuid)
      FROM json_to_recordset(jobs)
           AS r(identifier text, db_id text, actor_id text, job_key text, run_at timestamptz,
                max_attempts integer, priority integer);
  EXCEPTION WHEN data_exception THEN
    -- A field that cannot be read, or an element that is no object: the element-by-element
    -- rules name the first refused element (as they would have before any insert), else the
    -- first field that cannot be read.
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
    PERFORM app_jobs.add_jobs_refusal(jobs);
    SELECT u.place, coalesce(u.state, v_state), coalesce(u.message, v_message)
      INTO v_where, v_state, v_message
      FROM app_jobs.add_jobs_unreadable(jobs) AS u;
    RAISE EXCEPTION 'add_jobs(jobs): %: %', coalesce(v_where, 'an element'), v_message
      USING ERRCODE = v_state;
  END;
  IF v_refused THEN
    PERFORM app_jobs.add_jobs_refusal(jobs);
  END IF;

  -- Unkeyed jobs: one INSERT (one NOTIFY). Every field was read above: no data exception here.
  RETURN QUERY
  INSERT INTO app_jobs.jobs (database_id, actor_id, task_identifier, payload, queue_name,
                             run_at, max_attempts, priority)
  SELECT coalesce(nullif(r.db_id, '')::uuid, v_claim_db),
         coalesce(nullif(r.actor_id, '')::uuid, v_claim_actor),
         r.identifier,
         coalesce(r.payload, '{}'::json),
         CASE WHEN r.queue_name IN ('', 'default') THEN NULL ELSE r.queue_name END,
         coalesce(r.run_at, now()),
         coalesce(r.max_attempts, 25),
         coalesce(r.priority, 0)
    FROM ROWS FROM (json_to_recordset(jobs)
                      AS (identifier text, db_id text, actor_id text, payload json,
                          job_key text, queue_name text, run_at timestamptz,
                          max_attempts integer, priority integer))
         WITH ORDINALITY AS r(identifier, db_id, actor_id, payload, job_key, queue_name,
                              run_at, max_attempts, priority, n)
   WHERE r.job_key IS NULL
   ORDER BY r.n
  RETURNING *;

  -- Keyed jobs: the add_job replacement rules, one by one, within each job's database.
  IF v_keyed THEN
    RETURN QUERY
    SELECT k.*
      FROM ROWS FROM (json_to_recordset(jobs)
                        AS (identifier text, db_id text, actor_id text, payload json,
                            job_key text, queue_name text, run_at timestamptz,
                            max_attempts integer, priority integer))
           WITH ORDINALITY AS r(identifier, db_id, actor_id, payload, job_key, queue_name,
                                run_at, max_attempts, priority, n)
     CROSS JOIN LATERAL app_jobs.enqueue_job(
             coalesce(nullif(r.db_id, '')::uuid, v_claim_db),
             coalesce(nullif(r.actor_id, '')::uuid, v_claim_actor),
             r.identifier, r.payload, r.job_key, r.queue_name, r.run_at, r.max_attempts,
             r.priority) AS k
     WHERE r.job_key IS NOT NULL
     ORDER BY r.n;
  END IF;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- One job: add_job (both forms) and enqueue_job
-- ---------------------------------------------------------------------------------------------

-- The one place a job is inserted: both add_job forms, add_jobs' keyed elements and the trigger
-- helpers. As in 0002; the database id is looked up in the claims only when none is given.
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
  v_db uuid := coalesce(db_id, app_jobs.require_database_id(NULL));
  v_queue text := CASE WHEN queue_name IN ('', 'default') THEN NULL ELSE queue_name END;
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

-- add_job, both forms, as in 0002 but in PL/pgSQL: a SQL function that cannot be inlined (it is
-- SECURITY DEFINER) plans its body again on every call; PL/pgSQL keeps its plans for the
-- session.

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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN app_jobs.enqueue_job(app_jobs.caller_database_id(db_id), app_jobs.current_user_id(),
                              identifier, payload, job_key, queue_name, run_at, max_attempts,
                              priority);
END;
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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN app_jobs.enqueue_job(NULL, app_jobs.current_user_id(), identifier, payload, job_key,
                              queue_name, run_at, max_attempts, priority);
END;
$$;

-- 0002's error-path helper of add_jobs, replaced by add_jobs_unreadable above.
DROP FUNCTION IF EXISTS app_jobs.add_jobs_bad_field(json);

REVOKE EXECUTE ON FUNCTION
  app_jobs.add_jobs_unreadable(json),
  app_jobs.add_jobs_refusal(json)
  FROM PUBLIC;
DO $grants$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'administrator') THEN
    GRANT EXECUTE ON FUNCTION
      app_jobs.add_jobs_unreadable(json),
      app_jobs.add_jobs_refusal(json)
      TO administrator;
  END IF;
END;
$grants$;
