#!/usr/bin/env bash
# Makes sure the base images of docker-compose.jobs.yml and the Dockerfiles exist, and writes
# their names to an env file (default .cache/docker/base-images.env) for `docker compose`:
#
#   PYTHON_IMAGE=...   POSTGRES_IMAGE=...   MAILPIT_IMAGE=...
#
# Each public image (python:3.11-slim, postgres:16-alpine, axllent/mailpit) is used when it is
# present or can be pulled. Only when a registry cannot be reached does this build a local
# STAND-IN from Debian's packages instead (a Debian bookworm root file system made by
# debootstrap, imported with `docker import`, then docker/standins/*.Dockerfile). Stand-ins
# are for machines without the public registry only (such as this project's CI); they are
# tagged knative-jobs-standin/* and cached: the root file system is made once, the rest is
# ordinary layer-cached `docker build`.
#
# Usage: docker/base-images.sh [ENV_FILE]
set -euo pipefail
cd "$(dirname "$0")/.."

ENV_FILE=${1:-.cache/docker/base-images.env}
PUBLIC_PYTHON=${PUBLIC_PYTHON_IMAGE:-python:3.11-slim}
PUBLIC_POSTGRES=${PUBLIC_POSTGRES_IMAGE:-postgres:16-alpine}
PUBLIC_MAILPIT=${PUBLIC_MAILPIT_IMAGE:-axllent/mailpit:v1.21}
STANDIN=knative-jobs-standin
DEBIAN_IMAGE=$STANDIN/debian:bookworm
# Debian's mirror for debootstrap and apt inside the stand-in builds (plain HTTP, signed).
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The host's CA bundle goes into the Python stand-in, so that builds reach PyPI through a
# TLS-inspecting proxy when the host needs one.
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

log() { printf 'base-images: %s\n' "$*" >&2; }

have() { docker image inspect "$1" >/dev/null 2>&1; }

# Prints the image to use: the public one when present or pullable, else "".
public_or_nothing() {
  if have "$1" || timeout 300 docker pull -q "$1" >/dev/null 2>&1; then
    echo "$1"
  fi
}

debian_base() {
  if have "$DEBIAN_IMAGE"; then
    return
  fi
  command -v debootstrap >/dev/null || {
    log "debootstrap is missing (apt-get install debootstrap)"
    exit 1
  }
  local root
  root=$(mktemp -d /var/tmp/standin-rootfs.XXXXXX)
  log "building $DEBIAN_IMAGE with debootstrap (once; a few minutes)"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$DEBIAN_MIRROR" \
    >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    rm -rf "$root" "$root.log"
    exit 1
  }
  # lean: no package caches, documentation, translations or iconv modules
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/usr/lib/x86_64-linux-gnu/gconv
  echo "deb $DEBIAN_MIRROR bookworm main" >"$root/etc/apt/sources.list"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$root" "$root.log"
}

# build_standin NAME DOCKERFILE [extra files for the context...]
build_standin() {
  local name=$1 dockerfile=$2 context
  shift 2
  debian_base
  context=$(mktemp -d)
  cp "$dockerfile" "$context/Dockerfile"
  cp "$CA_BUNDLE" "$context/.ca-bundle.crt"
  for extra in "$@"; do cp "$extra" "$context/"; done
  log "building stand-in $name"
  docker build -q --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$name" "$context" \
    >"$context.log" 2>&1 || {
    tail -30 "$context.log" >&2
    rm -rf "$context" "$context.log"
    exit 1
  }
  rm -rf "$context" "$context.log"
  echo "$name"
}

python_image=$(public_or_nothing "$PUBLIC_PYTHON")
if [ -z "$python_image" ]; then
  python_image=$(build_standin "$STANDIN/python:3.11-slim" docker/standins/python.Dockerfile)
fi
postgres_image=$(public_or_nothing "$PUBLIC_POSTGRES")
if [ -z "$postgres_image" ]; then
  postgres_image=$(build_standin "$STANDIN/postgres:15" docker/standins/postgres.Dockerfile \
    docker/standins/postgres-entrypoint.sh)
fi
mailpit_image=$(public_or_nothing "$PUBLIC_MAILPIT")
if [ -z "$mailpit_image" ]; then
  mailpit_image=$(build_standin "$STANDIN/mailpit:dev" docker/standins/mailpit.Dockerfile \
    docker/standins/mailcatcher.py)
fi

mkdir -p "$(dirname "$ENV_FILE")"
cat >"$ENV_FILE" <<ENV
PYTHON_IMAGE=$python_image
POSTGRES_IMAGE=$postgres_image
MAILPIT_IMAGE=$mailpit_image
ENV
log "base images: $python_image, $postgres_image, $mailpit_image (in $ENV_FILE)"
