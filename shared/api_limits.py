"""Limits of the HTTP API's request bodies, read once from the environment.

A body is measured before it is parsed, so an oversized one costs no parsing and is never echoed back. Run
requests have their own, larger bound (``WEFT_MAX_PLAN_BYTES`` plus room for the rest of the request).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import env_int

__all__ = ["ApiLimits", "api_limits"]


@dataclass(frozen=True)
class ApiLimits:
    """Body limits of the small JSON requests (search, register a source, approve). Build with :meth:`from_env`."""

    max_json_body_bytes: int = 256 * 1024
    """Bytes of a search, source registration or approval body (WEFT_MAX_JSON_BODY_BYTES)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiLimits:
        """Read ``WEFT_MAX_JSON_BODY_BYTES`` from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        return cls(max_json_body_bytes=env_int(env, "WEFT_MAX_JSON_BODY_BYTES", cls.max_json_body_bytes, minimum=64))


@functools.cache
def api_limits() -> ApiLimits:
    """The process's limits, read from the environment on first use."""
    return ApiLimits.from_env()
