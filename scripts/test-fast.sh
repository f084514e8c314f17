#!/usr/bin/env bash
# The loop while developing: the unit tests in parallel (pytest-xdist, one worker per core), tests marked `slow`
# skipped. Installs nothing and starts no servers; scripts/test.sh (CI) still runs everything, lint and mypy included.
# Extra arguments go to pytest and win: `-m ""` keeps the slow tests, `-n 4` sets the workers, a path narrows the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Bytecode is written (unlike test.sh): the rewritten test modules are cached, collection takes half the time.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q -n auto --dist loadfile -m "not slow" tests/unit "$@"
