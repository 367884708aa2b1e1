-- Operator queries: the `jobs` command line, the HTTP API, the dashboard and live events.
-- {schema} is filled with the quoted JOBS_SCHEMA; parameters are psycopg %(name)s placeholders.
-- Statuses come from the views of migration 0004 (active_job_states, job_states).

-- name: add_job
SELECT id FROM {schema}.add_job(
    db_id := %(db_id)s::uuid,
    identifier := %(task)s,
    payload := %(payload)s::json,
    job_key := %(job_key)s,
    queue_name := %(queue_name)s,
    run_at := coalesce(%(run_at)s::timestamptz, now()),
    max_attempts := coalesce(%(max_attempts)s::int, 25),
    priority := coalesce(%(priority)s::int, 0)
);

-- name: job
-- Everything about one job (payload and result included).
SELECT id, task, status, queue, database_id, actor_id, priority, attempts, max_attempts,
       progress, progress_message, payload, result, last_error, key, worker_id, created_at,
       run_at, started_at, finished_at,
       extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 AS duration
  FROM {schema}.job_states
 WHERE id = %(id)s::bigint;

-- name: jobs_by_ids
-- The state of these jobs (no payload/result): what live events carry.
SELECT id, task, status, queue, database_id, priority, attempts, max_attempts, progress,
       progress_message, last_error, worker_id, created_at, run_at, started_at, finished_at,
       extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 AS duration
  FROM {schema}.job_states
 WHERE id = ANY (%(ids)s::bigint[]);

-- name: list_jobs
-- Newest first, filtered; paging by limit/offset.
SELECT id, task, status, queue, database_id, priority, attempts, max_attempts, progress,
       progress_message, last_error, worker_id, created_at, run_at, started_at, finished_at,
       extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 AS duration
  FROM {schema}.job_states
 WHERE (%(statuses)s::text[] IS NULL OR status = ANY (%(statuses)s::text[]))
   AND (%(task)s::text IS NULL OR task = %(task)s::text)
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(database_id)s::uuid IS NULL OR database_id = %(database_id)s::uuid)
 ORDER BY id DESC
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: retry_jobs
SELECT id FROM {schema}.retry_jobs(%(ids)s::bigint[]) AS r(id);

-- name: retry_failed
-- Every failed job (of one task, when given) back into the queue.
SELECT id FROM {schema}.retry_jobs(ARRAY(
    SELECT h.job_id FROM {schema}.job_history h
     WHERE h.status = 'failed'
       AND (%(task)s::text IS NULL OR h.task_identifier = %(task)s::text)
)) AS r(id);

-- name: cancel_jobs
SELECT id FROM {schema}.cancel_jobs(%(ids)s::bigint[], %(message)s::text) AS c(id);

-- name: existing_ids
SELECT id FROM {schema}.job_states WHERE id = ANY (%(ids)s::bigint[]);

-- name: prune_history
SELECT {schema}.prune_job_history(%(older_than)s::interval) AS pruned;

-- name: stats
-- Per task: the queue now, and what finished in the last hour with p50/p95 run time.
WITH active AS (
    SELECT task,
           count(*) FILTER (WHERE status = 'queued') AS queued,
           count(*) FILTER (WHERE status = 'scheduled') AS scheduled,
           count(*) FILTER (WHERE status = 'retrying') AS retrying,
           count(*) FILTER (WHERE status = 'running') AS running
      FROM {schema}.active_job_states
     GROUP BY task
), finished AS (
    SELECT task_identifier AS task,
           count(*) FILTER (WHERE status = 'completed') AS completed_1h,
           count(*) FILTER (WHERE status = 'failed') AS failed_1h,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled_1h,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM finished_at - started_at)::float8
           ) FILTER (WHERE status = 'completed') AS p50_seconds,
           percentile_cont(0.95) WITHIN GROUP (
               ORDER BY extract(epoch FROM finished_at - started_at)::float8
           ) FILTER (WHERE status = 'completed') AS p95_seconds
      FROM {schema}.job_history
     WHERE finished_at > now() - interval '1 hour'
     GROUP BY task_identifier
)
SELECT task,
       coalesce(queued, 0) AS queued, coalesce(scheduled, 0) AS scheduled,
       coalesce(retrying, 0) AS retrying, coalesce(running, 0) AS running,
       coalesce(completed_1h, 0) AS completed_1h, coalesce(failed_1h, 0) AS failed_1h,
       coalesce(cancelled_1h, 0) AS cancelled_1h, p50_seconds, p95_seconds
  FROM active FULL JOIN finished USING (task)
 ORDER BY task;

-- name: counts
-- Jobs per status: the queue now, and the last hour of the history.
SELECT status, count(*) AS jobs
  FROM (
    SELECT status FROM {schema}.active_job_states
    UNION ALL
    SELECT status FROM {schema}.job_history WHERE finished_at > now() - interval '1 hour'
  ) AS s
 GROUP BY status;

-- name: schedules
-- Scheduled jobs with their next run; state: active, pending (not planned yet), disabled,
-- finished (will not fire again) or invalid (schedule_error says why).
SELECT id, task_identifier AS task, schedule_info, payload, queue_name AS queue, priority,
       max_attempts, key, database_id, next_run_at, last_scheduled, last_scheduled_id,
       schedule_error,
       CASE WHEN schedule_error LIKE 'disabled:%%' THEN 'disabled'
            WHEN next_run_at IS NOT NULL THEN 'active'
            WHEN schedule_error LIKE 'finished:%%' THEN 'finished'
            WHEN schedule_error IS NOT NULL THEN 'invalid'
            ELSE 'pending' END AS state
  FROM {schema}.scheduled_jobs
 WHERE (%(id)s::bigint IS NULL OR id = %(id)s::bigint)
 ORDER BY next_run_at NULLS LAST, id;

-- name: add_schedule
SELECT id FROM {schema}.add_scheduled_job(
    db_id := %(db_id)s::uuid,
    identifier := %(task)s,
    payload := %(payload)s::json,
    schedule_info := %(schedule_info)s::json,
    job_key := %(job_key)s,
    queue_name := %(queue_name)s,
    max_attempts := coalesce(%(max_attempts)s::int, 25),
    priority := coalesce(%(priority)s::int, 0)
);

-- name: disable_schedule
-- Dormant (see docs/scheduling.md): no scheduler plans it until it is enabled again.
UPDATE {schema}.scheduled_jobs
   SET next_run_at = NULL, schedule_error = 'disabled: by an operator'
 WHERE id = %(id)s::bigint
RETURNING id;

-- name: enable_schedule
-- Planned afresh at the next scheduler pass (woken at once by the notification).
WITH enabled AS (
    UPDATE {schema}.scheduled_jobs
       SET next_run_at = NULL, schedule_error = NULL
     WHERE id = %(id)s::bigint
    RETURNING id
)
SELECT e.id, pg_notify('scheduled_jobs:insert', '') FROM enabled e;

-- name: remove_schedule
DELETE FROM {schema}.scheduled_jobs WHERE id = %(id)s::bigint RETURNING id;

-- name: run_schedule_now
-- One job from the schedule now (its regular ticks are unchanged).
SELECT r.id FROM {schema}.run_scheduled_job(%(id)s::bigint) AS r WHERE r.id IS NOT NULL;
