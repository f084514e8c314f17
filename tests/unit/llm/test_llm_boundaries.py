"""Import-time behaviour of the LLM and secrets modules (every export resolving is checked for all packages in
tests/unit/test_boundaries.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_importing_builds_nothing_and_stays_off_azure_functions() -> None:
    """Import the modules in a clean interpreter: no azure.functions, and shared.llm.chat alone loads no SDK client."""
    probe = (
        "import sys\n"
        "import shared.llm.chat\n"
        "light = not any(m in sys.modules for m in ('openai', 'azure.identity'))\n"
        "import shared.llm.providers, shared.secrets\n"
        "print(light, 'azure.functions' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60, env={}
    )

    assert result.stdout.split() == ["True", "False"]
