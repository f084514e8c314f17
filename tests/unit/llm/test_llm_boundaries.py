"""Public surface and import-time behaviour of the LLM and secrets modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import shared.llm.chat
import shared.llm.providers
import shared.secrets

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("module", "names"),
    [
        pytest.param(
            shared.llm.chat,
            {
                "LLM_NOT_CONFIGURED_MESSAGE",
                "ROLES",
                "ChatMessage",
                "ChatModel",
                "ChatResult",
                "ChatToolCall",
                "JsonSchemaFormat",
                "LlmSettings",
                "ModelThrottled",
                "Role",
                "ToolSchema",
                "UnusableReply",
                "build_chat_model",
                "load_prompt",
                "render_prompt",
            },
            id="llm",
        ),
        pytest.param(
            shared.llm.providers,
            {
                "COGNITIVE_SERVICES_SCOPE",
                "ChatCompletionsModel",
                "azure_openai_model",
                "azure_v1_base_url",
                "decode_json_reply",
                "openai_compatible_model",
                "parse_completion",
                "retry_after_seconds",
                "translate_error",
            },
            id="llm_providers",
        ),
        pytest.param(
            shared.secrets,
            {
                "KEY_VAULT_REFERENCE_PREFIX",
                "KeyVaultSecrets",
                "SecretReader",
                "SecretSource",
                "SecretsSettings",
                "build_credential",
                "build_secret_client",
                "build_secrets",
                "check_unresolved_references",
                "translate_credential_error",
            },
            id="secrets",
        ),
    ],
)
def test_public_names(module: object, names: set[str]) -> None:
    assert set(module.__all__) == names
    assert all(hasattr(module, name) for name in names)


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
