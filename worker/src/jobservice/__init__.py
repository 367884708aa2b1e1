"""The job service: worker, callback server and scheduler for app_jobs."""
