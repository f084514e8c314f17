"""Sandboxed execution of code that calls tools: AST policy, confined worker processes, durable replay.

Entry points: :func:`run_code` (inline mode) and :func:`run_replay_step` (durable replay), both on the default local
:class:`ProcessSandbox`; :class:`DynamicSessionsExecutor` runs the same steps in Azure Container Apps dynamic
sessions behind the same :class:`CodeExecutor` seam; :func:`build_code_executor` picks one from
:class:`SandboxBackend` (WEFT_SANDBOX_BACKEND).
"""

from __future__ import annotations

from .backend import SandboxBackend, build_code_executor
from .dynamic_sessions import DynamicSessionsExecutor
from .executor import CodeExecutor, default_executor, run_code, run_replay_step
from .limits import Capacity, Limits
from .process import Confinement, ProcessSandbox
from .records import CodeError, CodeResult, PendingCall, RecordedCall, ReplayStep

__all__ = [
    "Capacity",
    "CodeError",
    "CodeExecutor",
    "CodeResult",
    "Confinement",
    "DynamicSessionsExecutor",
    "Limits",
    "PendingCall",
    "ProcessSandbox",
    "RecordedCall",
    "ReplayStep",
    "SandboxBackend",
    "build_code_executor",
    "default_executor",
    "run_code",
    "run_replay_step",
]
