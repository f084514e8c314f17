#!/usr/bin/env bash
# The main job on embedded defaults: installs what it needs into .venv, runs the app on the devhost, submits a job
# over HTTP and prints the completed run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python scripts/demo.py "$@"
