"""MCP server settings (``WEFT_MCP_*``), read once from the environment into a frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from shared.settings import env_float, env_int

__all__ = ["McpSettings", "mcp_settings"]

_MAX_WAIT_CEILING_S = 230.0
"""Azure's load balancer drops an HTTP request idle for 230 s; no MCP call may wait that long for a run."""


@dataclass(frozen=True)
class McpSettings:
    """How long MCP calls wait for runs, and how much they answer at once."""

    wait_s: float = 20.0
    """WEFT_MCP_WAIT_S: how long ``execute`` and ``run_plan`` wait for the run to finish before answering with its
    id and progress (0 answers at once). At most ``max_wait_s``."""
    max_wait_s: float = 60.0
    """WEFT_MCP_MAX_WAIT_S: the longest wait a ``get_run(wait_s=...)`` may ask for (at most 230 s, Azure's idle
    HTTP limit; MCP clients commonly time a call out after 60 s or more)."""
    poll_interval_s: float = 0.25
    """WEFT_MCP_POLL_INTERVAL_S: how often a waiting call reads the run's status."""
    max_answer_chars: int = 24_000
    """WEFT_MCP_MAX_ANSWER_CHARS: the largest run result (JSON characters) a tool answer carries; a larger one is
    paged (``get_run(run_id, offset=...)``)."""
    max_describe: int = 20
    """WEFT_MCP_MAX_DESCRIBE: most tools one ``describe_tools`` call describes."""
    default_k: int = 8
    """WEFT_MCP_SEARCH_K: tools ``search_tools`` returns when ``k`` is not given (bounded by WEFT_SEARCH_MAX_K)."""

    def __post_init__(self) -> None:
        if not 0 <= self.wait_s <= self.max_wait_s <= _MAX_WAIT_CEILING_S:
            raise ValueError(f"need 0 <= WEFT_MCP_WAIT_S ({self.wait_s}) <= WEFT_MCP_MAX_WAIT_S ({self.max_wait_s})"
                             f" <= {_MAX_WAIT_CEILING_S:g}")
        if self.poll_interval_s <= 0 or self.max_answer_chars < 1024 or self.max_describe < 1 or self.default_k < 1:
            raise ValueError("WEFT_MCP_POLL_INTERVAL_S > 0, WEFT_MCP_MAX_ANSWER_CHARS >= 1024, "
                             "WEFT_MCP_MAX_DESCRIBE >= 1 and WEFT_MCP_SEARCH_K >= 1 are required")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> McpSettings:
        """Read ``WEFT_MCP_*``; unset ones keep their defaults. Raises ``ValueError`` on bad values."""
        env = os.environ if env is None else env
        return cls(
            wait_s=env_float(env, "WEFT_MCP_WAIT_S", cls.wait_s, minimum=0.0),
            max_wait_s=env_float(env, "WEFT_MCP_MAX_WAIT_S", cls.max_wait_s, minimum=0.0),
            poll_interval_s=env_float(env, "WEFT_MCP_POLL_INTERVAL_S", cls.poll_interval_s, minimum=0.01),
            max_answer_chars=env_int(env, "WEFT_MCP_MAX_ANSWER_CHARS", cls.max_answer_chars, minimum=1024),
            max_describe=env_int(env, "WEFT_MCP_MAX_DESCRIBE", cls.max_describe, minimum=1),
            default_k=env_int(env, "WEFT_MCP_SEARCH_K", cls.default_k, minimum=1),
        )


@lru_cache(maxsize=1)
def mcp_settings() -> McpSettings:
    """The process's settings, read from the environment on first use."""
    return McpSettings.from_env()
