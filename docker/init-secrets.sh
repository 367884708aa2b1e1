#!/bin/sh
# One-shot init of docker-compose.jobs.yml (service `secrets`): makes sure the stack's secrets
# exist in the `secrets` volume (mounted on /secrets), readable by uid 10001 only:
#   /secrets/signing-secret  signs dispatches and callbacks (JOBS_SIGNING_SECRET_FILE of the
#                            job service and of every function)
#   /secrets/api-token       bearer token of the job service's HTTP API and dashboard
# For each: the variable (JOBS_SIGNING_SECRET, JOBS_API_TOKEN) when set and non-empty (it
# overrides the file); else the value already in the volume (restarts keep it); else a new
# random one (48 random bytes, base64url).
# Usage: init-secrets.sh [DIRECTORY]   (default /secrets)
set -eu
dir=${1:-/secrets}
umask 077

# ensure FILE VALUE-OF-THE-OVERRIDING-VARIABLE NAME-OF-THE-VARIABLE
ensure() {
  if [ -n "$2" ]; then
    printf '%s' "$2" >"$1.tmp"
    mv "$1.tmp" "$1"
    echo "init-secrets: $1 from $3"
  elif [ -s "$1" ]; then
    echo "init-secrets: $1 kept"
  else
    head -c 48 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=' >"$1.tmp"
    mv "$1.tmp" "$1"
    echo "init-secrets: $1 generated"
  fi
}

ensure "$dir/signing-secret" "${JOBS_SIGNING_SECRET:-}" JOBS_SIGNING_SECRET
ensure "$dir/api-token" "${JOBS_API_TOKEN:-}" JOBS_API_TOKEN
