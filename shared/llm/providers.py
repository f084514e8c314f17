"""Chat Completions providers behind :class:`shared.llm.chat.ChatModel`, and the one SDK-error mapping.

Both providers are a :class:`ChatCompletionsModel` over an ``openai.OpenAI`` client; they differ only in base URL,
credential and the name of the output-token cap. See :mod:`shared.llm.chat` for why Azure uses the v1 API.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx2
import openai
from azure.core.exceptions import ClientAuthenticationError
from openai.types.chat import ChatCompletion

from shared.errors import InvalidRequest, ModelBehaviorError, NotConfigured, UpstreamUnavailable, WeftError
from shared.llm.chat import (
    ROLES,
    ChatMessage,
    ChatResult,
    ChatToolCall,
    JsonSchemaFormat,
    LlmSettings,
    ModelThrottled,
    Role,
    ToolSchema,
    UnusableReply,
)
from shared.results import TokenUsage

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = [
    "COGNITIVE_SERVICES_SCOPE",
    "ChatCompletionsModel",
    "azure_openai_model",
    "azure_v1_base_url",
    "decode_json_reply",
    "openai_compatible_model",
    "parse_completion",
    "retry_after_seconds",
    "translate_error",
]

_log = logging.getLogger(__name__)

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
"""The Entra scope for Azure OpenAI data-plane calls."""

_CONNECT_TIMEOUT_SECONDS = 5.0
_MAX_ERROR_DETAIL = 300


class ChatCompletionsModel:
    """A :class:`shared.llm.chat.ChatModel` over the Chat Completions API of an ``openai.OpenAI`` client."""

    def __init__(
        self,
        client: openai.OpenAI,
        deployments: Mapping[Role, str],
        *,
        provider: str,
        max_output_tokens: int = 0,
        output_token_parameter: str = "max_completion_tokens",
    ) -> None:
        """``deployments`` maps each role to a deployment/model name; ``provider`` is used in error messages."""
        missing = [role for role in ROLES if not deployments.get(role)]
        if missing:
            raise ValueError(f"no deployment for roles {missing}")
        self._client = client
        self._deployments = dict(deployments)
        self._provider = provider
        self._max_output_tokens = max_output_tokens
        self._output_token_parameter = output_token_parameter

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        response_format: JsonSchemaFormat | None = None,
        tools: Sequence[ToolSchema] | None = None,
        role: Role = "planner",
    ) -> ChatResult:
        """See :meth:`shared.llm.chat.ChatModel.complete`."""
        if role not in self._deployments:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        deployment = self._deployments[role]
        request: dict[str, Any] = {"model": deployment, "messages": [m.to_wire() for m in messages]}
        if response_format is not None:
            request["response_format"] = response_format.to_wire()
        if tools:
            request["tools"] = [tool.to_wire() for tool in tools]
        if self._max_output_tokens:
            request[self._output_token_parameter] = self._max_output_tokens
        try:
            completion = self._client.chat.completions.create(**request)
        except Exception as exc:
            error = translate_error(exc, provider=self._provider, deployment=deployment)
            if error is None:
                raise
            _log.warning("llm call failed: role=%s deployment=%s error=%s", role, deployment, error.code)
            raise error from exc
        try:
            result = parse_completion(completion, role=role, deployment=deployment, response_format=response_format)
        except ModelBehaviorError as exc:
            usage = _usage(completion)
            _log.warning(
                "llm reply unusable: role=%s deployment=%s finish_reason=%s prompt_tokens=%d completion_tokens=%d",
                role,
                deployment,
                completion.choices[0].finish_reason if completion.choices else None,
                usage.prompt_tokens,
                usage.completion_tokens,
            )
            raise UnusableReply(exc.message, usage=usage, deployment=deployment) from None
        _log.info(
            "llm call: role=%s deployment=%s model=%s prompt_tokens=%d completion_tokens=%d cached_tokens=%d",
            role,
            deployment,
            result.model,
            result.usage.prompt_tokens,
            result.usage.completion_tokens,
            result.usage.cached_tokens,
        )
        return result

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._client.close()


def azure_openai_model(settings: LlmSettings, credential: TokenCredential) -> ChatCompletionsModel:
    """Azure OpenAI through the v1 API with an Entra token provider (Managed Identity in Azure)."""
    from azure.identity import get_bearer_token_provider

    return _model(settings, azure_v1_base_url(settings.azure_openai_endpoint),
                  get_bearer_token_provider(credential, COGNITIVE_SERVICES_SCOPE),
                  provider="Azure OpenAI", output_token_parameter="max_completion_tokens")


def openai_compatible_model(settings: LlmSettings, api_key: str | Callable[[], str]) -> ChatCompletionsModel:
    """Any OpenAI-compatible Chat Completions server at ``settings.base_url``.

    ``api_key`` may be a callable (e.g. a cached Key Vault lookup); the SDK calls it before every request.
    ``max_tokens`` is sent rather than ``max_completion_tokens`` because local servers know the older name.
    """
    return _model(settings, settings.base_url, api_key,
                  provider=f"OpenAI-compatible endpoint {settings.base_url}", output_token_parameter="max_tokens")


def _model(settings: LlmSettings, base_url: str, api_key: str | Callable[[], str], *, provider: str,
           output_token_parameter: str) -> ChatCompletionsModel:
    client = openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=settings.max_retries,
        timeout=httpx2.Timeout(settings.timeout_seconds, connect=_CONNECT_TIMEOUT_SECONDS),
        http_client=_http_client(settings.max_retry_wait_seconds),
    )
    return ChatCompletionsModel(client, settings.deployments(), provider=provider,
                                max_output_tokens=settings.max_output_tokens,
                                output_token_parameter=output_token_parameter)


def azure_v1_base_url(endpoint: str) -> str:
    """The v1 API base URL for a resource endpoint; a trailing ``/``, ``/openai`` or ``/openai/v1`` is accepted."""
    root = endpoint.strip().rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if root.endswith(suffix):
            root = root[: -len(suffix)]
    return f"{root}/openai/v1/"


def _http_client(max_retry_wait_seconds: float) -> httpx2.Client:
    """The SDK's default HTTP client plus a hook that vetoes in-call retries that cannot help soon.

    The SDK would otherwise sleep up to two minutes inside the activity on a long ``retry-after``, and retry a 429
    that means "quota exhausted". Marking such a response ``x-should-retry: false`` (a header the SDK obeys) makes
    the call fail at once: long throttling is then retried durably by the orchestrator, exhausted quota not at all.
    """

    def veto_pointless_retries(response: httpx2.Response) -> None:
        wait = retry_after_seconds(response.headers)
        if (wait is not None and wait > max_retry_wait_seconds) or _is_quota_exhausted(response):
            response.headers["x-should-retry"] = "false"

    return openai.DefaultHttpxClient(event_hooks={"response": [veto_pointless_retries]})


def _is_quota_exhausted(response: httpx2.Response) -> bool:
    if response.status_code != 429:
        return False
    response.read()
    try:
        body = response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and error.get("code") == "insufficient_quota"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's retry hint in seconds: ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date)."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / divisor
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


# ------------------------------------------------------------------------------------------------- error mapping


def translate_error(exc: BaseException, *, provider: str, deployment: str) -> WeftError | None:
    """Map an SDK or credential exception to Weft's error tree; None for exceptions that are bugs, not outcomes.

    This is the only place LLM failures are classified; :func:`shared.errors.is_retryable` reads the result.
    """
    where = f"{provider} (deployment {deployment!r})"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _error_detail(exc)
        if status == 429:
            if _error_code(exc) == "insufficient_quota":
                return NotConfigured(f"{where} has no quota left: {detail}")
            wait = retry_after_seconds(exc.response.headers)
            hint = f"; the service asked to retry after {wait:g} s" if wait is not None else ""
            return ModelThrottled(f"{where} is throttling requests (HTTP 429){hint}.", retry_after_seconds=wait)
        if status in (401, 403):
            return NotConfigured(
                f"{where} refused the credentials (HTTP {status}): {detail}. In Azure, grant the app's identity the "
                "'Cognitive Services OpenAI User' role; for other servers check LLM_API_KEY / LLM_API_KEY_SECRET_NAME."
            )
        if status == 404:
            return NotConfigured(f"{where} was not found (HTTP 404): {detail}. Check the deployment name and endpoint.")
        if status in (408, 409) or status >= 500:
            return UpstreamUnavailable(f"{where} failed with HTTP {status}: {detail}")
        return InvalidRequest(f"{where} rejected the request (HTTP {status}): {detail}")
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamUnavailable(f"{where} did not answer in time.")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamUnavailable(f"{where} could not be reached.")
    if isinstance(exc, openai.APIError):
        return UpstreamUnavailable(f"{where} returned a malformed response.")
    if isinstance(exc, ClientAuthenticationError):
        from shared.secrets import translate_credential_error

        return translate_credential_error(exc, purpose=f"calling {where}")
    return None


def _error_body(exc: openai.APIStatusError) -> Mapping[str, Any]:
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return body["error"]
    return body if isinstance(body, Mapping) else {}


def _error_code(exc: openai.APIStatusError) -> str:
    return str(_error_body(exc).get("code") or "")


def _error_detail(exc: openai.APIStatusError) -> str:
    error = _error_body(exc)
    message = str(error.get("message") or exc.message)
    code = error.get("code")
    text = f"[{code}] {message}" if code else message
    return text[:_MAX_ERROR_DETAIL]


# ------------------------------------------------------------------------------------------------ reply decoding

_FENCE = re.compile(r"\A```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*\Z", re.DOTALL)


def parse_completion(
    completion: ChatCompletion, *, role: Role, deployment: str, response_format: JsonSchemaFormat | None = None
) -> ChatResult:
    """Decode a Chat Completions response into a :class:`ChatResult`.

    Raises ``ModelBehaviorError`` with a message addressed to the model when the reply cannot be used.
    """
    if not completion.choices:
        raise ModelBehaviorError("Your reply was empty. Reply again.")
    choice = completion.choices[0]
    message = choice.message
    finish_reason = str(choice.finish_reason or "stop")
    if message.refusal:
        raise ModelBehaviorError(f"You declined to answer ({message.refusal[:_MAX_ERROR_DETAIL]}). Reply again.")
    if finish_reason == "content_filter":
        raise ModelBehaviorError("Your reply was blocked by the content filter. Reply again without that content.")
    tool_calls = tuple(_decode_tool_call(call) for call in message.tool_calls or ())
    parsed: Any = None
    if response_format is not None and not tool_calls:
        if finish_reason == "length":
            raise ModelBehaviorError(
                "Your reply was cut off at the output token limit before the JSON was complete. "
                f"Reply again with a shorter JSON value matching the `{response_format.name}` schema."
            )
        parsed = decode_json_reply(message.content, response_format)
    return ChatResult(
        content=message.content,
        usage=_usage(completion),
        deployment=deployment,
        model=completion.model,
        role=role,
        finish_reason=finish_reason,
        parsed=parsed,
        tool_calls=tool_calls,
        response_id=completion.id or None,
    )


def decode_json_reply(content: str | None, response_format: JsonSchemaFormat) -> Any:
    """Parse and schema-check a structured reply; a single Markdown code fence around it is tolerated."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    name = response_format.name
    text = (content or "").strip()
    if not text:
        raise ModelBehaviorError(f"Your reply was empty. Reply with a JSON value matching the `{name}` schema.")
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelBehaviorError(
            f"Your reply was not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            f"Reply with only a JSON value matching the `{name}` schema: no prose, no code fences."
        ) from None
    error = best_match(Draft202012Validator(dict(response_format.schema)).iter_errors(value))
    if error is not None:
        path = _json_path(error.absolute_path)
        raise ModelBehaviorError(
            f"Your reply did not match the `{name}` schema at {path}: {error.message[:_MAX_ERROR_DETAIL]}. "
            "Reply with the corrected JSON only."
        )
    return value


def _json_path(parts: Sequence[str | int]) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return f"`{path}`"


def _decode_tool_call(call: Any) -> ChatToolCall:
    function = getattr(call, "function", None)
    if function is None:
        raise ModelBehaviorError("You made a tool call of a kind that is not supported; call a function tool.")
    try:
        arguments = json.loads(function.arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ModelBehaviorError(
            f"The arguments of your call to `{function.name}` were not valid JSON ({exc.msg}). "
            "Call the tool again with a JSON object as its arguments."
        ) from None
    if not isinstance(arguments, dict):
        raise ModelBehaviorError(
            f"The arguments of your call to `{function.name}` must be a JSON object, not {type(arguments).__name__}."
        )
    return ChatToolCall(id=call.id, name=function.name, arguments=arguments)


def _usage(completion: ChatCompletion) -> TokenUsage:
    usage = completion.usage
    if usage is None:
        return TokenUsage()
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None and details.cached_tokens else 0
    return TokenUsage(prompt_tokens=usage.prompt_tokens or 0, completion_tokens=usage.completion_tokens or 0,
                      cached_tokens=cached)
