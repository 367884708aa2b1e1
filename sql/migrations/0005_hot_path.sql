-- 0005_hot_path: what every job costs the server, cut without changing any function.
--
-- Each job is inserted into jobs, updated by its claim, deleted by its completion and inserted
-- into job_history. Every index on those rows is maintained on each of these steps, so:
--
-- * jobs.locked_by: the index covered every row, so each enqueue added a NULL entry that no
--   query reads (they all look up one worker's jobs: locked_by = $1). Now partial.
-- * job_history: finished_at is only ever read by range ("the last hour", "older than 7 days")
--   and rows arrive in finished_at order, which a BRIN index serves at almost no upkeep; the
--   (task_identifier, finished_at) btree was read by no query (per-task figures filter the
--   last hour by finished_at first) and cost one more index insert per finished job.
-- * The jobs BEFORE INSERT trigger ran PL/pgSQL for every inserted row only to set created_at
--   and updated_at to now(), which the column defaults already are. It now runs only when it
--   would change something (a queue name '' / 'default', or timestamps given explicitly); the
--   UPDATE trigger is unchanged.
-- * Storage: jobs rows are updated once per attempt; fillfactor 90 keeps room on each page for
--   the new version. The queue tables churn (two dead rows per job, and the claim's index scan
--   steps over the dead entries of every job claimed since the last vacuum): autovacuum visits
--   them after 5 % of their rows (+ 1,000) changed instead of 20 % (+ 50), unthrottled.

DROP INDEX IF EXISTS app_jobs.jobs_locked_by_idx;
CREATE INDEX jobs_locked_by_idx ON app_jobs.jobs (locked_by) WHERE locked_by IS NOT NULL;

DROP INDEX IF EXISTS app_jobs.job_history_finished_at_idx;
CREATE INDEX job_history_finished_at_idx ON app_jobs.job_history USING brin (finished_at);
DROP INDEX IF EXISTS app_jobs.job_history_task_idx;

DROP TRIGGER IF EXISTS _100_jobs_before_write ON app_jobs.jobs;
DROP TRIGGER IF EXISTS _100_jobs_before_insert ON app_jobs.jobs;
CREATE TRIGGER _100_jobs_before_insert
  BEFORE INSERT ON app_jobs.jobs
  FOR EACH ROW
  WHEN (NEW.queue_name IN ('', 'default')
        OR NEW.created_at IS DISTINCT FROM now()
        OR NEW.updated_at IS DISTINCT FROM now())
  EXECUTE FUNCTION app_jobs.tg_jobs_before_write();
CREATE TRIGGER _100_jobs_before_write
  BEFORE UPDATE ON app_jobs.jobs
  FOR EACH ROW EXECUTE FUNCTION app_jobs.tg_jobs_before_write();

ALTER TABLE app_jobs.jobs SET (
  fillfactor = 90,
  autovacuum_vacuum_scale_factor = 0.05,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_cost_delay = 0,
  autovacuum_analyze_scale_factor = 0.05
);
ALTER TABLE app_jobs.job_queues SET (
  autovacuum_vacuum_scale_factor = 0.05,
  autovacuum_vacuum_cost_delay = 0
);
