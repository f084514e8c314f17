#!/usr/bin/env bash
# Installs everything and runs the whole test suite: lint (ruff, mypy), unit, integration (Azurite and devhost processes
# started by the tests themselves), infra checks. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
bash scripts/azurite.sh install
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
if [ -f scripts/check_infra.sh ]; then
  echo "== infra (tree-sitter-bicep, checkov)"
  bash scripts/check_infra.sh
fi
