#!/usr/bin/env bash
# The main job on the embedded defaults: set-up (idempotent), then `terrafix demo`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/bootstrap.sh
exec .venv/bin/terrafix demo "$@"
