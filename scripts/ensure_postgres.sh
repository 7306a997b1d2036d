#!/usr/bin/env bash
# Start, once per machine, a throw-away PostgreSQL 15 + PostGIS cluster for the tests and the
# benchmarks, and print its libpq connection string (also written to build/pg/dsn).
#
# The cluster lives under build/pg (ignored by git), listens on a unix socket in build/pg/run
# and on a free loopback port, trusts local connections (it holds nothing but test data) and
# runs with fsync off: it is a scratch server, never a production one. PostgreSQL refuses to
# run as root, so under root initdb/pg_ctl run as the unprivileged `postgres` user that the
# Debian package creates, and the folders are handed to that user. Idempotent: a running
# cluster is reused; concurrent callers serialise on a lock file. Exits non-zero with the
# reason (and the server log) when the server cannot be started, so that callers fail loudly.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pgbin="${TERRAFIX_PGBIN:-/usr/lib/postgresql/15/bin}"
base="${TERRAFIX_PG_DIR:-$repo/build/pg}"
data="$base/data"
sock="$base/run"
log="$base/server.log"
dbname="terrafix_test"

if [ ! -x "$pgbin/initdb" ] || [ ! -x "$pgbin/pg_ctl" ]; then
  echo "ensure_postgres: PostgreSQL 15 binaries not found in $pgbin (run scripts/bootstrap.sh)" >&2
  exit 1
fi
if [ ! -f /usr/share/postgresql/15/extension/postgis.control ]; then
  echo "ensure_postgres: PostGIS for PostgreSQL 15 is not installed (run scripts/bootstrap.sh)" >&2
  exit 1
fi

mkdir -p "$base"
exec 9>"$base/.lock"
flock 9

if [ "$(id -u)" = 0 ]; then
  owner=postgres
  id "$owner" >/dev/null 2>&1 || { echo "ensure_postgres: user '$owner' missing" >&2; exit 1; }
  as_owner() { runuser -u "$owner" -- "$@"; }
else
  owner="$(id -un)"
  as_owner() { "$@"; }
fi

if [ ! -s "$data/PG_VERSION" ]; then
  rm -rf "$data"
  mkdir -p "$data" "$sock"
  chown "$owner" "$base" "$data" "$sock"
  chmod 700 "$data"
  as_owner "$pgbin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale >"$base/initdb.log" 2>&1 \
    || { echo "ensure_postgres: initdb failed:" >&2; cat "$base/initdb.log" >&2; exit 1; }
fi
mkdir -p "$sock"
chown "$owner" "$base" "$sock"

if ! as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  touch "$log"; chown "$owner" "$log"
  if ! as_owner "$pgbin/pg_ctl" -D "$data" -l "$log" -w -t 60 -o \
      "-k $sock -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null 9>&-; then
    echo "ensure_postgres: the server did not start; its log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
fi
# postmaster.pid line 4 is the port the running server listens on.
port="$(sed -n 4p "$data/postmaster.pid")"
psql=("$pgbin/psql" -X -q -h "$sock" -p "$port" -U postgres -v ON_ERROR_STOP=1)
if [ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$dbname'")" != 1 ]; then
  "${psql[@]}" -d postgres -c "CREATE DATABASE $dbname"
fi
"${psql[@]}" -d "$dbname" -c "SET client_min_messages TO warning" \
  -c "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null
dsn="host=$sock port=$port user=postgres dbname=$dbname"
echo "$dsn" > "$base/dsn"
echo "$dsn"
