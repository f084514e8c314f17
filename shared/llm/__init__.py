"""The LLM seam (``ChatModel.complete``), its settings and prompts; providers are built by :func:`build_chat_model`."""

from shared.llm.chat import (
    LLM_NOT_CONFIGURED_MESSAGE,
    ROLES,
    ChatMessage,
    ChatModel,
    ChatResult,
    JsonSchemaFormat,
    LlmSettings,
    ModelThrottled,
    Role,
    ToolSchema,
    UnusableReply,
    build_chat_model,
    load_prompt,
    render_prompt,
)

__all__ = [
    "LLM_NOT_CONFIGURED_MESSAGE",
    "ROLES",
    "ChatMessage",
    "ChatModel",
    "ChatResult",
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
