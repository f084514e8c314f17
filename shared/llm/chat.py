"""The LLM seam: one ``ChatModel.complete`` call, typed results, usage accounting, prompts as data.

What callers see::

    model = build_chat_model(LlmSettings.from_env(env), secrets)   # None when no LLM is configured
    result = model.complete([ChatMessage.system(render_prompt("task_planner", tools=...)),
                             ChatMessage.user(task)],
                            response_format=JsonSchemaFormat("plan", PLAN_SCHEMA), role="planner")
    result.parsed, result.tool_calls, result.usage          # usage sums with ``+`` / ``sum(...)``

Providers (in :mod:`shared.llm.providers`) both speak the Chat Completions wire protocol through the ``openai`` SDK:

- **Azure OpenAI** through the **v1 API**: ``OpenAI(base_url=f"{endpoint}/openai/v1/", api_key=token_provider)``
  where ``token_provider = get_bearer_token_provider(credential, "https://cognitiveservices.azure.com/.default")``.
  Chosen over ``AzureOpenAI(api_version=...)`` because (1) there is no dated ``api-version`` to pin and migrate,
  (2) the deployment name travels in ``model=`` exactly as a model name does on any OpenAI-compatible server, so
  Azure and local endpoints (Ollama, vLLM, llama.cpp) share one client class, one code path and one fake server in
  tests, and (3) the SDK calls the token provider on every request, so Entra tokens refresh without rebuilding the
  client (azure-identity caches the token until shortly before expiry).
- **OpenAI-compatible**: any ``base_url`` with an API key taken from the environment (``LLM_API_KEY``) or from a
  Key Vault secret (``LLM_API_KEY_SECRET_NAME``; read through the secrets cache on each request, so rotation is
  picked up after the cache TTL).

Two roles have separate deployments: ``planner`` (writes plans and code) and ``worker`` (answers, summaries).

Errors — the mapping from SDK exceptions to :mod:`shared.errors` leaves lives in one function,
:func:`shared.llm.providers.translate_error`:

- short throttling (429/5xx with a ``retry-after`` up to ``LLM_MAX_RETRY_WAIT_SECONDS``) is retried inside the call by
  the SDK (``LLM_MAX_RETRIES``); a longer ``retry-after``, or throttling that outlasts those retries, raises
  :class:`ModelThrottled` (an ``UpstreamUnavailable``, so retryable) carrying ``retry_after_seconds``, and the
  orchestrator's durable ``RetryOptions`` back off without holding a worker;
- connection failures, timeouts and 5xx → ``UpstreamUnavailable``; 400/422 → ``InvalidRequest``;
  401/403/404 and exhausted quota → ``NotConfigured`` (not retried);
- a reply that cannot be used (invalid JSON, schema mismatch, unparseable tool arguments, empty, truncated) →
  :class:`UnusableReply`, a ``ModelBehaviorError`` whose message is written to be shown to the model in a repair
  round (see the ``repair`` prompt) and which carries the call's ``usage`` so the spent tokens still count;
  operators get a log line without the content.

Nothing here logs prompts, replies, tokens or keys. No client or credential is built at import time, and this module
does not import ``openai`` or ``azure.identity`` (the providers module does, when a model is built).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from shared.errors import ModelBehaviorError, NotConfigured, UpstreamUnavailable
from shared.results import TokenUsage
from shared.settings import env_float, env_int, env_str

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.secrets import SecretSource

__all__ = [
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
]

Role = Literal["planner", "worker"]
"""Which deployment answers: ``planner`` writes plans and code, ``worker`` writes answers and summaries."""

ROLES: tuple[Role, ...] = ("planner", "worker")

LLM_NOT_CONFIGURED_MESSAGE = (
    "No language model is configured, so task mode is unavailable (plan and code modes still work). "
    "To use Azure OpenAI, set AZURE_OPENAI_ENDPOINT (https://<resource>.openai.azure.com) and "
    "LLM_PLANNER_DEPLOYMENT (optionally LLM_WORKER_DEPLOYMENT), and grant the app's managed identity the "
    "'Cognitive Services OpenAI User' role on the resource (set AZURE_CLIENT_ID for a user-assigned identity). "
    "To use an OpenAI-compatible server (Ollama, vLLM, llama.cpp), set LLM_BASE_URL (e.g. http://localhost:11434/v1) "
    "and LLM_PLANNER_DEPLOYMENT to a model name, plus LLM_API_KEY or LLM_API_KEY_SECRET_NAME (a Key Vault secret) "
    "if the server needs a key."
)
"""Body text for the 503 returned when :func:`build_chat_model` gives ``None``."""

_PROVIDERS = ("azure_openai", "openai_compatible", "none")


class UnusableReply(ModelBehaviorError):
    """A reply that could not be used, with the tokens it cost (they count towards the run's usage).

    ``message`` is addressed to the model, for a repair round (see the ``repair`` prompt).
    """

    def __init__(self, message: str, *, usage: TokenUsage, deployment: str) -> None:
        super().__init__(message)
        self.usage = usage
        self.deployment = deployment


class ModelThrottled(UpstreamUnavailable):
    """The model endpoint is throttling for longer than the SDK's in-call retries; retried durably.

    ``retry_after_seconds`` is the server's ``retry-after`` hint when it sent one.
    """

    code = "model_throttled"

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


# --------------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ChatToolCall:
    """A function call the model asked for."""

    id: str
    """The call id; echo it in the ``tool`` message that carries the result."""
    name: str
    """Tool (function) name as offered in ``tools``."""
    arguments: Mapping[str, Any]
    """Decoded JSON arguments (not yet validated against the tool's schema)."""


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation, in the roles the Chat Completions API knows."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    tool_call_id: str | None = None
    """For ``tool`` messages: the id of the call this result answers."""
    tool_calls: tuple[ChatToolCall, ...] = ()
    """For ``assistant`` messages: calls the model made."""

    @classmethod
    def system(cls, content: str) -> ChatMessage:
        """A system (instructions) message."""
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        """A user message."""
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str | None, tool_calls: Sequence[ChatToolCall] = ()) -> ChatMessage:
        """An earlier model reply, replayed into the conversation."""
        return cls("assistant", content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str) -> ChatMessage:
        """The result of a tool call, answering ``tool_call_id``."""
        return cls("tool", content, tool_call_id=tool_call_id)

    def to_wire(self) -> dict[str, Any]:
        """The Chat Completions JSON form of this message."""
        wire: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_call_id is not None:
            wire["tool_call_id"] = self.tool_call_id
        if self.tool_calls:
            wire["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))},
                }
                for call in self.tool_calls
            ]
        return wire


@dataclass(frozen=True)
class ToolSchema:
    """A tool offered to the model for native tool calling (rendered by the catalog)."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    """JSON schema of the arguments object."""

    def to_wire(self) -> dict[str, Any]:
        """The Chat Completions ``tools[]`` entry."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


@dataclass(frozen=True)
class JsonSchemaFormat:
    """Structured output: the reply must be a JSON value matching ``schema``.

    With ``strict`` the service enforces the schema (Azure OpenAI and OpenAI require every object to list all its
    properties as required and set ``additionalProperties: false``); the reply is validated locally either way, since
    OpenAI-compatible servers may ignore ``response_format``.
    """

    name: str
    schema: Mapping[str, Any]
    strict: bool = True

    def __post_init__(self) -> None:
        from jsonschema import Draft202012Validator

        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ValueError(f"response format name must match [A-Za-z0-9_-]{{1,64}}, got {self.name!r}")
        Draft202012Validator.check_schema(dict(self.schema))

    def to_wire(self) -> dict[str, Any]:
        """The Chat Completions ``response_format`` value."""
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": dict(self.schema), "strict": self.strict},
        }


@dataclass(frozen=True)
class ChatResult:
    """What one ``complete`` call returned."""

    content: str | None
    """The reply text (for structured output: the raw JSON text)."""
    usage: TokenUsage
    deployment: str
    """The deployment (or model name) the request was sent to."""
    model: str
    """The model the service reports having used (e.g. ``gpt-4.1-2025-04-14``)."""
    role: Role
    finish_reason: str = "stop"
    parsed: Any = None
    """The decoded and schema-checked JSON value when a ``response_format`` was requested, else None."""
    tool_calls: tuple[ChatToolCall, ...] = field(default=())
    response_id: str | None = None
    """The service's id of the completion (``chatcmpl-...``), for telemetry."""

    def to_message(self) -> ChatMessage:
        """This reply as an assistant message, to continue the conversation (e.g. after tool results)."""
        return ChatMessage.assistant(self.content, self.tool_calls)


@runtime_checkable
class ChatModel(Protocol):
    """The seam every LLM call goes through."""

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        response_format: JsonSchemaFormat | None = None,
        tools: Sequence[ToolSchema] | None = None,
        role: Role = "planner",
    ) -> ChatResult:
        """Send one chat completion request to the ``role``'s deployment and return the decoded reply.

        Raises ``UnusableReply`` (a ``ModelBehaviorError`` carrying the call's usage; the message is fit for a
        repair round),
        ``ModelThrottled``/``UpstreamUnavailable`` (retryable), ``InvalidRequest`` or ``NotConfigured``.
        """
        ...


# -------------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LlmSettings:
    """LLM settings; build with :meth:`from_env`."""

    provider: str = "none"
    """``azure_openai``, ``openai_compatible`` or ``none`` (LLM_PROVIDER; inferred from the endpoints when unset)."""
    azure_openai_endpoint: str = ""
    """``https://<resource>.openai.azure.com`` (AZURE_OPENAI_ENDPOINT)."""
    base_url: str = ""
    """OpenAI-compatible base URL including ``/v1``, e.g. ``http://localhost:11434/v1`` (LLM_BASE_URL)."""
    planner_deployment: str = ""
    """Deployment (Azure) or model name (compatible servers) for the planner role (LLM_PLANNER_DEPLOYMENT)."""
    worker_deployment: str = ""
    """Deployment or model name for the worker role (LLM_WORKER_DEPLOYMENT; defaults to the planner's)."""
    api_key: str = field(default="", repr=False)
    """Key for an OpenAI-compatible server (LLM_API_KEY). Kept out of ``repr``; never logged."""
    api_key_secret_name: str = ""
    """Key Vault secret holding that key (LLM_API_KEY_SECRET_NAME); wins over LLM_API_KEY."""
    client_id: str = ""
    """User-assigned managed identity client id (AZURE_CLIENT_ID); empty uses DefaultAzureCredential."""
    max_retries: int = 2
    """Retries the SDK makes inside one call on 408/409/429/5xx and connection errors (LLM_MAX_RETRIES)."""
    max_retry_wait_seconds: float = 10.0
    """Longest server ``retry-after`` waited inside a call; longer ones fail fast to durable retry
    (LLM_MAX_RETRY_WAIT_SECONDS)."""
    timeout_seconds: float = 120.0
    """Per-request timeout (LLM_TIMEOUT_SECONDS)."""
    max_output_tokens: int = 4096
    """Cap on generated tokens per call; 0 sends no cap (LLM_MAX_OUTPUT_TOKENS)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LlmSettings:
        """Read the settings from an environment mapping (raises ValueError on malformed values)."""
        endpoint = env_str(env, "AZURE_OPENAI_ENDPOINT", "").strip()
        base_url = env_str(env, "LLM_BASE_URL", "").strip()
        provider = env_str(env, "LLM_PROVIDER", "").strip().lower()
        if not provider:
            provider = "azure_openai" if endpoint else "openai_compatible" if base_url else "none"
        if provider not in _PROVIDERS:
            raise ValueError(f"setting LLM_PROVIDER must be one of {', '.join(_PROVIDERS)}, got {provider!r}")
        planner = env_str(env, "LLM_PLANNER_DEPLOYMENT", "").strip()
        return cls(
            provider=provider,
            azure_openai_endpoint=endpoint,
            base_url=base_url,
            planner_deployment=planner,
            worker_deployment=env_str(env, "LLM_WORKER_DEPLOYMENT", planner).strip(),
            api_key=env_str(env, "LLM_API_KEY", ""),
            api_key_secret_name=env_str(env, "LLM_API_KEY_SECRET_NAME", "").strip(),
            client_id=env_str(env, "AZURE_CLIENT_ID", "").strip(),
            max_retries=env_int(env, "LLM_MAX_RETRIES", cls.max_retries, minimum=0),
            max_retry_wait_seconds=env_float(env, "LLM_MAX_RETRY_WAIT_SECONDS", cls.max_retry_wait_seconds, minimum=0),
            timeout_seconds=env_float(env, "LLM_TIMEOUT_SECONDS", cls.timeout_seconds, minimum=1),
            max_output_tokens=env_int(env, "LLM_MAX_OUTPUT_TOKENS", cls.max_output_tokens, minimum=0),
        )

    @property
    def configured(self) -> bool:
        """Whether any provider is selected."""
        return self.provider != "none"

    @property
    def server_address(self) -> str | None:
        """The host name of the endpoint the model is called at (``server.address`` on LLM spans), if any."""
        url = self.azure_openai_endpoint if self.provider == "azure_openai" else self.base_url
        return urlsplit(url).hostname if url else None

    def deployments(self) -> dict[Role, str]:
        """Deployment (or model name) per role."""
        return {"planner": self.planner_deployment, "worker": self.worker_deployment or self.planner_deployment}


def build_chat_model(
    settings: LlmSettings,
    secrets: SecretSource | None = None,
    *,
    credential: TokenCredential | None = None,
) -> ChatModel | None:
    """Build the configured chat model, or return None when no LLM is configured.

    On ``None`` callers answer 503 with :data:`LLM_NOT_CONFIGURED_MESSAGE`. A half-finished configuration (an
    endpoint without a deployment, a key secret name without a vault) raises ``NotConfigured`` naming the setting.
    ``credential`` (Azure only) defaults to :func:`shared.secrets.build_credential` for ``settings.client_id``; pass
    one to share it with the Key Vault client. ``secrets`` resolves ``LLM_API_KEY_SECRET_NAME``.
    """
    if not settings.configured:
        return None
    if not settings.planner_deployment:
        raise NotConfigured(
            f"LLM provider {settings.provider} is selected but LLM_PLANNER_DEPLOYMENT is not set. "
            + LLM_NOT_CONFIGURED_MESSAGE,
            field="LLM_PLANNER_DEPLOYMENT",
        )
    from shared.llm import providers as llm_providers

    if settings.provider == "azure_openai":
        if not settings.azure_openai_endpoint:
            raise NotConfigured(
                "LLM_PROVIDER is azure_openai but AZURE_OPENAI_ENDPOINT is not set.", field="AZURE_OPENAI_ENDPOINT"
            )
        if credential is None:
            from shared.secrets import build_credential

            credential = build_credential(settings.client_id)
        return llm_providers.azure_openai_model(settings, credential)

    if not settings.base_url:
        raise NotConfigured("LLM_PROVIDER is openai_compatible but LLM_BASE_URL is not set.", field="LLM_BASE_URL")
    api_key: str | Callable[[], str]
    if settings.api_key_secret_name:
        if secrets is None:
            raise NotConfigured(
                "LLM_API_KEY_SECRET_NAME is set but no Key Vault is configured (set KEY_VAULT_URL).",
                field="KEY_VAULT_URL",
            )
        api_key = functools.partial(secrets.get, settings.api_key_secret_name)
    else:
        # Local servers (Ollama, llama.cpp) need no key, but the SDK insists on one; it is sent and ignored.
        api_key = settings.api_key or "unused"
    return llm_providers.openai_compatible_model(settings, api_key)


# --------------------------------------------------------------------------------------------------------- prompts

_PROMPTS_DIR = Path(__file__).with_name("prompts")
_PROMPT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


@functools.lru_cache(maxsize=64)
def load_prompt(name: str) -> str:
    """The text of ``shared/llm/prompts/<name>.md`` (cached). Raises ValueError for names that are not prompts."""
    if not _PROMPT_NAME.fullmatch(name):
        raise ValueError(f"prompt names are lowercase identifiers, got {name!r}")
    path = _PROMPTS_DIR / f"{name}.md"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in _PROMPTS_DIR.glob("*.md")))
        raise ValueError(f"no prompt named {name!r}; available: {available}")
    return path.read_text(encoding="utf-8")


def render_prompt(name: str, **values: str) -> str:
    """Load a prompt and fill its ``{{placeholder}}`` slots; every slot must be given and every value used."""
    template = load_prompt(name)
    wanted = set(_PLACEHOLDER.findall(template))
    missing = wanted - values.keys()
    unused = values.keys() - wanted
    if missing or unused:
        raise ValueError(
            f"prompt {name!r} takes placeholders {sorted(wanted)}; missing {sorted(missing)}, unknown {sorted(unused)}"
        )
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
