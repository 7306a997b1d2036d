#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (idempotent), PostgreSQL on loopback, models,
# then pytest over tests/ on all cores.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/bootstrap.sh
set +e
.venv/bin/python -m pytest -n "${TERRAFIX_TEST_WORKERS:-auto}" --timeout=900 "$@"
rc=$?
set -e
exit $rc
