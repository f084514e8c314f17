"""ONNX Runtime sessions over graphs built in memory, whose serialised form is kept for later processes.

Tool search builds two ONNX graphs with the ``onnx`` package (MiniLM's layers, and the int8 product of the vector
pre-filter); their weights reach the sessions as external initializers, so a graph alone is a few KB. Importing
``onnx`` costs 0.6 s (``ml_dtypes`` computes its float tables at import), a third of a 100k-tool warm start: a graph
is therefore saved once, under a name and a key naming everything it depends on, in a folder of the user's own under
the temporary directory, and read back by later processes without importing ``onnx``. A folder that is not the
user's own, or that others may write to, is not used; a saved graph ONNX Runtime refuses is built again.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from shared.cache_folders import private_folder, prune_by_use

__all__ = ["GRAPHS_KEPT", "GRAPH_DIR", "graph_saved", "session_over_saved_graph"]

logger = logging.getLogger(__name__)

GRAPH_DIR = Path(tempfile.gettempdir()) / f"weft-onnx-{os.getuid()}"

GRAPHS_KEPT = 4
"""Graphs kept per name (keys differ by code version and, for the int8 pre-filter, catalog size)."""

Session = TypeVar("Session")


def graph_saved(name: str, key_prefix: str) -> bool:
    """Whether a graph ``name`` with a key starting with ``key_prefix`` is saved where it would be read (a folder that
    is not the user's own is never read, so a graph planted there must not spare the ``onnx`` import)."""
    return private_folder(GRAPH_DIR) and any(GRAPH_DIR.glob(f"{name}-{key_prefix}*.onnx"))


def session_over_saved_graph(name: str, key: str, build: Callable[[], Any],
                             session: Callable[[bytes], Session]) -> Session:
    """``session(graph)`` for the serialised ``build()`` (an ``onnx`` model): read from the folder when saved under
    ``name`` and ``key``, else built and saved there."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

    path = GRAPH_DIR / f"{name}-{key}.onnx"
    private = private_folder(GRAPH_DIR)
    if private and path.is_file():
        try:
            return session(path.read_bytes())
        except (Fail, InvalidGraph, InvalidProtobuf):
            logger.warning("the saved ONNX graph %s could not be loaded: building it again", path.name)
    graph: bytes = build().SerializeToString()
    if private:
        try:
            with tempfile.NamedTemporaryFile(dir=GRAPH_DIR, delete=False) as scratch:
                scratch.write(graph)
            os.replace(scratch.name, path)
            prune_by_use(GRAPH_DIR.glob(f"{name}-*.onnx"), path, GRAPHS_KEPT,
                         lambda old: old.unlink(missing_ok=True))  # other keys: older code, other catalog sizes
        except OSError:  # a full disk: a later process builds it again
            logger.warning("the ONNX graph %s could not be saved in %s", path.name, GRAPH_DIR)
    return session(graph)

