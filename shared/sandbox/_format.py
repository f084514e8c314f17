"""The sandbox's ``string.Formatter`` (and the formatter behind ``str.format``), and how worker messages quote the
code's names. Worker side, stdlib only."""

from __future__ import annotations

import _string as _cstring
from typing import Any

QUOTED_CHARS = 60
"""Characters of a name a worker message quotes (as ``shared.errors.QUOTED_CHARS``, which the worker cannot import)."""


def quoted(name: str) -> str:
    """``name`` quoted for a message (``repr``), cut to its first :data:`QUOTED_CHARS` characters with ``…`` when
    longer, as ``shared.errors.quoted`` on the parent side: a name built by the code may be megabytes long. A ``str``
    subclass is copied to a plain ``str`` first, so none of its own methods run."""
    text = str.__str__(name)
    return repr(text) if len(text) <= QUOTED_CHARS else repr(text[:QUOTED_CHARS]) + "…"


def make_formatter(rules: Any, hooks: Any) -> type:
    """The sandbox's ``string.Formatter``: rebuilt without the real class (so no class graph leads to its unchecked
    ``get_field``), refusing attribute fields the policy blocks (``"{0.__class__}"``); the policy lives in this
    closure, not in attributes code could change. Subclasses may override the same methods."""

    class Formatter:
        """``string.Formatter`` that refuses blocked attribute fields."""

        def format(self, format_string: str, /, *args: Any, **kwargs: Any) -> str:
            return self.vformat(format_string, args, kwargs)

        def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
            used: set[Any] = set()
            result = self._vformat(format_string, args, kwargs, used, 2)
            self.check_unused_args(used, args, kwargs)
            return result

        def _vformat(self, format_string: str, args: Any, kwargs: Any, used: set[Any], depth: int) -> str:
            if depth < 0:
                raise ValueError("Max string recursion exceeded")
            parts: list[str] = []
            auto = 0
            for literal, written, spec, conversion in self.parse(format_string):
                parts.append(literal)
                if written is None:
                    continue
                field_name = written
                if written == "":
                    field_name, auto = str(auto), auto + 1
                elif written.isdigit():
                    auto = -1
                obj, key = self.get_field(field_name, args, kwargs)
                used.add(key)
                obj = self.convert_field(obj, conversion)
                parts.append(self.format_field(obj, self._vformat(spec or "", args, kwargs, used, depth - 1)))
            return "".join(parts)

        def parse(self, format_string: str) -> Any:
            return _cstring.formatter_parser(format_string)

        def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
            first, rest = _cstring.formatter_field_name_split(field_name)
            obj = self.get_value(first, args, kwargs)
            for is_attribute, key in rest:
                if is_attribute:
                    problem = rules.problem(key)
                    if problem:
                        hooks.violation(f"format field {quoted(field_name)}: {problem}")
                    obj = getattr(obj, key)
                else:
                    obj = obj[key]
            return obj, first

        def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
            return args[key] if isinstance(key, int) else kwargs[key]

        def check_unused_args(self, used_args: Any, args: Any, kwargs: Any) -> None:
            """Unused arguments are fine (as in ``string.Formatter``)."""

        def format_field(self, value: Any, format_spec: str) -> str:
            return format(value, format_spec)

        def convert_field(self, value: Any, conversion: str | None) -> Any:
            if conversion is None:
                return value
            if conversion == "s":
                return str(value)
            if conversion == "r":
                return repr(value)
            if conversion == "a":
                return ascii(value)
            raise ValueError(f"Unknown conversion specifier {conversion}")

    return Formatter
