#!/usr/bin/env bash
# Offline policy scan of infra/ with checkov's Bicep checks.
#
# checkov pins pycep-parser 0.5.1 and packaging<24, which conflict with the project venv (pycep-parser 0.7.1), so it
# lives in its own virtualenv, .venv-checkov, created here on first use (~45 s on 2 cores).
# Fails (non-zero exit) on any failed check, any Bicep file checkov cannot parse, or a scan that evaluated nothing.
# A check that does not apply is skipped inline, inside the resource:  // checkov:skip=CKV_AZURE_NN:reason
#
# Usage: bash scripts/check_infra.sh            (from anywhere; paths are relative to the repo root)
# Env:   INFRA_DIR (default infra/), CHECKOV_VENV (default .venv-checkov), CHECKOV_VERSION (default 3.3.30), PYTHON (default python3.11/python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
VERSION="${CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
INFRA="${INFRA_DIR:-$ROOT/infra}"

if [[ ! -x "$VENV/bin/checkov" ]] || [[ "$("$VENV/bin/checkov" --version 2>/dev/null)" != "$VERSION" ]]; then
  echo "check_infra: creating $VENV with checkov==$VERSION"
  start=$(date +%s)
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$VERSION" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$VENV/bin/checkov" --version >/dev/null
  echo "check_infra: venv ready in $(( $(date +%s) - start )) s"
fi

report="$(mktemp)"
trap 'rm -f "$report"' EXIT

# --skip-download: no call to the Prisma Cloud API (no network); exit code 1 only means "some check failed",
# which the summary below reports, so it is not treated as a crash.
set +e
"$VENV/bin/checkov" --directory "$INFRA" --framework bicep --skip-download --compact --output json >"$report" 2>/dev/null
rc=$?
set -e
if [[ $rc -gt 1 ]]; then
  echo "check_infra: checkov crashed (exit $rc)" >&2
  exit 2
fi

"$VENV/bin/python" - "$report" "$ROOT" <<'PY'
import json
import sys

report_path, root = sys.argv[1], sys.argv[2]
with open(report_path, encoding="utf-8") as fh:
    data = json.load(fh)
reports = data if isinstance(data, list) else [data]
bicep = [r for r in reports if r.get("check_type") == "bicep"]
if not bicep:
    print("check_infra: checkov produced no bicep report", file=sys.stderr)
    sys.exit(1)
results = bicep[0]["results"]
summary = bicep[0]["summary"]


def where(check: dict) -> str:
    lines = check.get("file_line_range") or [0, 0]
    return f"infra{check['file_path']}:{lines[0]} {check['resource']}"


for check in results.get("failed_checks", []):
    print(f"FAILED  {check['check_id']}  {where(check)}  {check['check_name']}")
    if check.get("guideline"):
        print(f"        {check['guideline']}")
for check in results.get("skipped_checks", []):
    reason = check["check_result"].get("suppress_comment", "")
    print(f"SKIPPED {check['check_id']}  {where(check)}  reason: {reason}")
for error in results.get("parsing_errors", []):
    print(f"PARSE ERROR {error}")

passed, failed, skipped = summary["passed"], summary["failed"], summary["skipped"]
parse_errors = summary.get("parsing_errors", 0)
print(
    f"check_infra: checkov {summary.get('checkov_version')} bicep: passed={passed} failed={failed} "
    f"skipped={skipped} parsing_errors={parse_errors} resources={summary.get('resource_count')}"
)
if failed or parse_errors or passed + failed + skipped == 0:
    print("check_infra: FAIL", file=sys.stderr)
    sys.exit(1)
print("check_infra: OK")
PY
