#!/bin/bash
# What the official postgres image's entrypoint does with POSTGRES_USER, POSTGRES_PASSWORD and
# POSTGRES_DB on first start, for the local stand-in image built from Debian's PostgreSQL.
set -euo pipefail
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown -R postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    exec runuser -u postgres -- "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    "$bin/initdb" --username="$user" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    database="${POSTGRES_DB:-$user}"  # as the official image: the user's name by default
    if [ "$database" != postgres ]; then
        "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        "$bin/psql" -v ON_ERROR_STOP=1 --username="$user" -d postgres -c "CREATE DATABASE \"$database\"" >/dev/null
        "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    fi
fi
if [ "${1:-postgres}" = postgres ]; then
    shift || true
    exec "$bin/postgres" -D "$PGDATA" "$@"
fi
exec "$@"
