"""The embedding model loads while the app is imported (before it serves anything), so the first search only builds
the index and never stalls other requests on the ONNX Runtime session's creation or the weights' read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT, devhost_env

_PROBE = (
    "import function_app\n"
    "from shared.search.embedding.encoders import shared_encoder\n"
    "print('loaded' if shared_encoder(256).loaded else 'not loaded')\n"
)


def _model_state_after_app_import(extra: dict[str, str]) -> str:
    env = devhost_env({"WEFT_SEARCH_WARM_AT_START": "false", "AzureWebJobsStorage": "", **extra})
    done = subprocess.run([sys.executable, "-c", _PROBE], check=False, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(("setting", "expected"), [("true", "loaded"), ("false", "not loaded")])
def test_the_app_import_loads_the_embedding_model_when_configured(setting: str, expected: str) -> None:
    assert _model_state_after_app_import({"WEFT_SEARCH_LOAD_MODEL_WITH_APP": setting}) == expected


def test_an_app_whose_model_cannot_load_still_imports() -> None:
    # An invalid search setting makes the load fail; the app must still import (runs do not need search).
    assert _model_state_after_app_import({"WEFT_SEARCH_MAX_TOKENS": "1"}) == "not loaded"
