-- name: history_count
SELECT count(*) FROM app_jobs.job_history;

-- name: drain_seconds
-- First claim to last completion, by the database's clock.
SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM app_jobs.job_history;

-- name: clear
TRUNCATE app_jobs.job_history, app_jobs.jobs;
