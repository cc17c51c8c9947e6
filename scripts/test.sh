#!/usr/bin/env bash
# The test suite as CI runs it: installs what is missing, starts a PostgreSQL server for the
# service's tests (Debian's postgresql package, as its own user, on loopback), runs pytest with
# the given arguments, and stops the server again.
#
#   scripts/test.sh -q                  # everything
#   scripts/test.sh -q tests/serve      # some tests
#
# With ICM_TEST_POSTGRES_URL already set, that server is used and none is started.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c "import icm.serve.app, pytest, onnxruntime, playwright, argon2, ray.data" 2>/dev/null; then
  "$PYTHON" -m pip install --quiet -e ".[local,dev]"
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# Debian packages the tests need; the package lists are fetched once per run, when first needed.
apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    apt_install postgresql
  fi
  PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  PGDATA="${ICM_TEST_PGDATA:-/tmp/icm-test-postgres}"
  PGPORT="${ICM_TEST_PGPORT:-54329}"
  # the server refuses to run as root: it runs as the postgres user the package created
  as_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi; }
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    as_root mkdir -p "$PGDATA"
    as_root chown postgres:postgres "$PGDATA"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust >/dev/null
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -w -l "$PGDATA/server.log" \
      -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
    STARTED_POSTGRES=1
  fi
  psql=("$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [ -z "$(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'icm'")" ]; then
    as_pg "${psql[@]}" -c "CREATE ROLE icm LOGIN PASSWORD 'icm'"
  fi
  if [ -z "$(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'icm_test'")" ]; then
    as_pg "${psql[@]}" -c "CREATE DATABASE icm_test OWNER icm"
  fi
  export ICM_TEST_POSTGRES_URL="postgresql+psycopg://icm:icm@127.0.0.1:$PGPORT/icm_test"
}

stop_postgres() {
  if [ "${STARTED_POSTGRES:-0}" = 1 ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -w stop -m fast >/dev/null || true
  fi
}

# The review console's browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download is not used).
if [ -z "${ICM_TEST_CHROMIUM:-}" ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium
  fi
  export ICM_TEST_CHROMIUM="$(command -v chromium)"
fi

if [ -z "${ICM_TEST_POSTGRES_URL:-}" ]; then
  start_postgres
  trap stop_postgres EXIT
fi
"$PYTHON" -m pytest "$@"
