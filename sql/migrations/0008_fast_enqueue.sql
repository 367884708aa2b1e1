-- 0008_fast_enqueue: add_jobs reads its JSON array once, checks it set-based, inserts in one
-- statement; add_job takes the same short path. Same arguments, results, rules and messages.
--
-- add_jobs (0002) walked the array in PL/pgSQL to check each element (every `->>` on json
-- re-parses the element) and then read it again with json_array_elements and `->>` for each of
-- nine fields: about two thirds of its server time. Now:
--
-- * json_to_recordset parses each element once into typed columns;
-- * one set-based pass answers "is any element refused?" and "is any keyed?". Only when an
--   element is refused does the element-by-element check of 0002 run (add_jobs_refusal), and
--   it reports the first refused element exactly as before (the element, then the field);
-- * the unkeyed jobs are one INSERT (one NOTIFY); the keyed jobs still go one by one through
--   enqueue_job (the key replacement rules), and only when there are any.
--
-- enqueue_job / add_job: the database id and queue are resolved in SQL expressions instead of
-- nested PL/pgSQL calls; the unkeyed insert is one statement.
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
