"""jobfn: turn a typed handler into a job function served over HTTP."""
