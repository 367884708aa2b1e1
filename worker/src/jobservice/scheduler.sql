-- Named queries of the scheduler (jobservice.scheduler). Each block starts with
-- "-- name: <name>". {schema} is replaced by the quoted schema identifier
-- (psycopg.sql.Identifier); parameters use psycopg's %(name)s placeholders.
--
-- State of a scheduled_jobs row, as the scheduler sees it:
--   next_run_at NULL, schedule_error NULL   not planned yet (new, or reset after an edit)
--   next_run_at NULL, schedule_error set    dormant until reset: invalid ("rule: ..."), or will
--                                           never fire again ("finished: ...")
--   next_run_at a time                      fires then (schedule_error: last run error, if any)

-- name: work
-- Due or unplanned schedules, locked for this pass; rows another scheduler holds are skipped.
SELECT id, task_identifier, schedule_info::text AS schedule_info,
       md5(schedule_info::text) AS fingerprint, next_run_at, schedule_error,
       now() AS now
  FROM {schema}.scheduled_jobs
 WHERE (next_run_at <= now() OR (next_run_at IS NULL AND schedule_error IS NULL))
   AND (%(tasks)s::text[] IS NULL OR task_identifier = ANY(%(tasks)s::text[]))
 ORDER BY next_run_at NULLS FIRST, priority, id
 LIMIT %(batch)s
   FOR UPDATE SKIP LOCKED;

-- name: run_scheduled_job
SELECT id FROM {schema}.run_scheduled_job(%(id)s::bigint);

-- name: set_next
UPDATE {schema}.scheduled_jobs
   SET next_run_at = %(next_run_at)s::timestamptz, schedule_error = %(error)s::text
 WHERE id = %(id)s::bigint;

-- name: set_dormant
-- Invalid, or finished: not planned again until next_run_at and schedule_error are reset.
UPDATE {schema}.scheduled_jobs
   SET next_run_at = NULL, schedule_error = %(error)s::text
 WHERE id = %(id)s::bigint;

-- name: next_wake
-- Seconds until the earliest planned run (NULL when nothing is planned).
SELECT extract(epoch FROM min(next_run_at) - now())::float8
  FROM {schema}.scheduled_jobs
 WHERE next_run_at IS NOT NULL
   AND (%(tasks)s::text[] IS NULL OR task_identifier = ANY(%(tasks)s::text[]));

-- name: fingerprints
-- The current schedule_info of every schedule, to notice edits made by plain UPDATEs.
SELECT id, md5(schedule_info::text)
  FROM {schema}.scheduled_jobs
 WHERE (%(tasks)s::text[] IS NULL OR task_identifier = ANY(%(tasks)s::text[]));

-- name: replan
-- Edited schedules (still with the edited schedule_info) become unplanned: planned afresh.
UPDATE {schema}.scheduled_jobs AS s
   SET next_run_at = NULL, schedule_error = NULL
  FROM unnest(%(ids)s::bigint[], %(fingerprints)s::text[]) AS e(id, fingerprint)
 WHERE s.id = e.id AND md5(s.schedule_info::text) = e.fingerprint
RETURNING s.id;
