#!/bin/sh
# Entrypoint of the PostgreSQL stand-in image: on the first start (an empty PGDATA) it creates
# the cluster with POSTGRES_USER as superuser and POSTGRES_PASSWORD as its password (required),
# allows password logins from the network and creates POSTGRES_DB; then it runs the command.
set -eu
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: POSTGRES_PASSWORD must be set (the superuser's password)" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    quoted=$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')
    echo "CREATE DATABASE \"$quoted\";" | postgres --single -j -D "$PGDATA" postgres >/dev/null
  fi
  echo "postgres-entrypoint: created the cluster, user $POSTGRES_USER, database $POSTGRES_DB"
fi
exec "$@"
