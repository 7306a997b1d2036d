#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (idempotent), PostgreSQL on loopback, models,
# then pytest over tests/ on all cores.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/bootstrap.sh
scripts/ensure_postgres.sh >/dev/null || echo "test.sh: PostgreSQL did not start; the postgres tests will fail with the reason" >&2
set +e
.venv/bin/python -m pytest -n "${TERRAFIX_TEST_WORKERS:-auto}" --timeout=900 "$@"
rc=$?
set -e
exit $rc
