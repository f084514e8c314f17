"""The wire between the parent and a sandbox worker: length-prefixed JSON frames and JSON-safe values.

Stdlib only and free of package imports outside this directory: the worker side loads it inside a fresh interpreter
(and the remote backend ships its source), so nothing here may depend on Weft's own packages or third-party code.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Every value that crosses the wire
(tool arguments, tool results, the code's result) is first made JSON-safe by :func:`to_json_safe`.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import fractions as _fractions
import json
import math
import os
import struct
from collections.abc import Mapping
from typing import Any

HEADER = struct.Struct(">I")
MAX_DEPTH = 64


class FrameError(Exception):
    """A frame could not be read: the peer closed the channel, sent garbage or exceeded the size cap."""


def encode(message: Mapping[str, Any]) -> bytes:
    """Serialise one message into a frame (header + JSON body)."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    """Parse a frame body; anything other than a JSON object is a :class:`FrameError`."""
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"malformed frame: {exc}") from None
    if not isinstance(message, dict):
        raise FrameError("malformed frame: not a JSON object")
    return message


def write_frame(fd: int, message: Mapping[str, Any]) -> None:
    """Write one frame to a blocking file descriptor."""
    view = memoryview(encode(message))
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise FrameError("channel closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_bytes: int) -> dict[str, Any]:
    """Read one frame from a blocking file descriptor, refusing bodies larger than ``max_bytes``."""
    (size,) = HEADER.unpack(_read_exactly(fd, HEADER.size))
    if size > max_bytes:
        raise FrameError(f"frame of {size} bytes exceeds the {max_bytes}-byte cap")
    return decode(_read_exactly(fd, size))


def to_json_safe(value: Any, *, strict: bool, _depth: int = 0) -> Any:
    """Convert ``value`` into plain JSON data (dict with str keys, list, str, int, float, bool, None).

    Tuples, sets and frozensets become lists (sets sorted when their items allow it, so the output is deterministic);
    dates and times become ISO strings; ``Decimal`` and ``Fraction`` become strings; non-finite floats become the
    strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``; mapping keys become strings.

    With ``strict=True`` anything else raises ``TypeError`` (used for tool arguments, so the code gets a clear error);
    with ``strict=False`` it becomes its ``repr`` (used for the code's result, which should never fail to return).
    """
    if _depth > MAX_DEPTH:
        raise ValueError(f"value is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {
            (key if isinstance(key, str) else str(to_json_safe(key, strict=False, _depth=_depth + 1))): to_json_safe(
                item, strict=strict, _depth=_depth + 1
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [to_json_safe(item, strict=strict, _depth=_depth + 1) for item in value]
    if isinstance(value, set | frozenset):
        items = [to_json_safe(item, strict=strict, _depth=_depth + 1) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, _decimal.Decimal | _fractions.Fraction):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    if strict:
        raise TypeError(
            f"a {type(value).__name__} value cannot be sent to a tool; "
            "use str, int, float, bool, None, list or dict (with str keys)"
        )
    return repr(value)


def json_size(value: Any) -> int:
    """Size in bytes of ``value`` encoded as compact JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
