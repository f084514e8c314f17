"""Where model-written code runs: local worker processes or an Azure Container Apps session pool.

``WEFT_SANDBOX_BACKEND=local`` (the default) uses the process-wide :class:`~shared.sandbox.process.ProcessSandbox`;
``dynamic_sessions`` sends every replay step to the session pool at ``WEFT_SESSION_POOL_ENDPOINT`` with a token
from the app's identity (the Bicep sets both when ``ENABLE_SESSION_POOL=true``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.settings import env_float, env_str

from .dynamic_sessions import DynamicSessionsExecutor, TokenCredential
from .executor import CodeExecutor, default_executor

__all__ = ["BACKENDS", "SandboxBackend", "build_code_executor"]

BACKENDS = ("local", "dynamic_sessions")
"""The values WEFT_SANDBOX_BACKEND accepts."""
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class SandboxBackend:
    """The code executor to build (WEFT_SANDBOX_BACKEND and, for a session pool, its endpoint and timeout)."""

    kind: str = "local"
    """``local`` or ``dynamic_sessions`` (WEFT_SANDBOX_BACKEND)."""
    session_pool_endpoint: str = ""
    """Pool management endpoint of the session pool (WEFT_SESSION_POOL_ENDPOINT); required for dynamic_sessions."""
    session_timeout_s: float = 120.0
    """The longest one code execution in the pool may take (WEFT_SESSION_TIMEOUT_S); the run's wall-clock limit plus
    a margin lowers it (see :mod:`shared.sandbox.dynamic_sessions`)."""

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise ValueError(f"WEFT_SANDBOX_BACKEND must be one of {', '.join(BACKENDS)}, got {self.kind!r}")
        if self.kind != "dynamic_sessions":
            return
        if not self.session_pool_endpoint:
            raise ValueError("WEFT_SESSION_POOL_ENDPOINT is required when WEFT_SANDBOX_BACKEND=dynamic_sessions")
        url = urlsplit(self.session_pool_endpoint)
        if url.scheme != "https" and not (url.scheme == "http" and url.hostname in _LOOPBACK):
            raise ValueError(
                "WEFT_SESSION_POOL_ENDPOINT must be an https:// URL (http only on loopback), "
                f"got {self.session_pool_endpoint!r}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SandboxBackend:
        """Read the settings; an unknown backend or a missing pool endpoint is a ``ValueError`` naming the setting."""
        return cls(
            kind=env_str(env, "WEFT_SANDBOX_BACKEND", cls.kind).strip().lower() or cls.kind,
            session_pool_endpoint=env_str(env, "WEFT_SESSION_POOL_ENDPOINT", "").strip(),
            session_timeout_s=env_float(env, "WEFT_SESSION_TIMEOUT_S", cls.session_timeout_s, minimum=1.0),
        )


def build_code_executor(backend: SandboxBackend, credential: Callable[[], TokenCredential]) -> CodeExecutor:
    """The executor for ``backend``; ``credential`` is called only for a session pool."""
    if backend.kind == "dynamic_sessions":
        return DynamicSessionsExecutor(
            backend.session_pool_endpoint, credential(), timeout_seconds=backend.session_timeout_s
        )
    return default_executor()
