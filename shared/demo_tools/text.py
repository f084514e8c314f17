"""Text: statistics, word frequency, guarded regex extraction, hashing and encodings."""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import math
import re
import urllib.parse
from typing import Annotated, Any, Literal

import regex
from pydantic import Field

from shared.errors import ToolArgumentsInvalid

__all__ = [
    "MAX_TEXT_CHARS",
    "decode_text",
    "encode_text",
    "hash_text",
    "regex_extract",
    "text_statistics",
    "word_frequency",
]

MAX_TEXT_CHARS = 1_000_000
"""Longest text any text tool accepts."""
MAX_REGEX_INPUT_CHARS = 200_000
"""Longest text ``regex_extract`` searches."""
MAX_PATTERN_CHARS = 500
"""Longest regular expression ``regex_extract`` accepts."""
REGEX_TIMEOUT_S = 1.0
"""Matching time budget: catastrophic backtracking ends with an error instead of a stuck worker."""

_WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")
_STOPWORDS_TEXT = (
    "a an and are as at be but by for from had has have he her his i if in into is it its me my no not of on or our "
    "she so than that the their them then there these they this to was we were what when which who will with you your"
)
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


def text_statistics(text: Text, words_per_minute: Annotated[int, Field(ge=50, le=1000)] = 238) -> dict[str, Any]:
    """Count characters, words, sentences and paragraphs of a text and estimate its reading time.

    Args:
        text: The text to analyse.
        words_per_minute: Reading speed used for the reading time (238 is an adult average for non-fiction).
    """
    words = _WORD.findall(text)
    ends = list(_SENTENCE_END.finditer(text))
    sentences = len(ends)
    if _WORD.search(text[ends[-1].end() :] if ends else text):  # a last sentence without a full stop
        sentences += 1
    paragraphs = [part for part in re.split(r"\n\s*\n", text) if part.strip()]
    seconds = len(words) / words_per_minute * 60.0
    return {
        "characters": len(text),
        "characters_no_spaces": sum(1 for char in text if not char.isspace()),
        "words": len(words),
        "unique_words": len({word.lower() for word in words}),
        "sentences": sentences,
        "paragraphs": len(paragraphs),
        "average_word_length": round(sum(map(len, words)) / len(words), 3) if words else 0.0,
        "average_sentence_words": round(len(words) / sentences, 3) if sentences else 0.0,
        "reading_time_seconds": round(seconds, 1),
        "reading_time_minutes": math.ceil(seconds / 60.0) if words else 0,
    }


def word_frequency(
    text: Text,
    top: Annotated[int, Field(ge=1, le=1000)] = 10,
    ignore_stopwords: bool = True,
    min_length: Annotated[int, Field(ge=1, le=50)] = 1,
) -> dict[str, Any]:
    """The most frequent words of a text (case-insensitive), most frequent first, ties alphabetical.

    Args:
        text: The text to analyse.
        top: How many words to return.
        ignore_stopwords: Skip common English function words ("the", "and", "of", ...).
        min_length: Skip words shorter than this many characters.
    """
    counts = collections.Counter(
        word
        for word in (match.lower() for match in _WORD.findall(text))
        if len(word) >= min_length and not (ignore_stopwords and word in _STOPWORDS)
    )
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return {
        "total_words": sum(counts.values()),
        "distinct_words": len(counts),
        "words": [{"word": word, "count": count} for word, count in ranked],
    }


_FLAGS = {"ignorecase": regex.IGNORECASE, "multiline": regex.MULTILINE, "dotall": regex.DOTALL}


def regex_extract(
    pattern: Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_CHARS)],
    text: Annotated[str, Field(max_length=MAX_REGEX_INPUT_CHARS)],
    flags: list[Literal["ignorecase", "multiline", "dotall"]] = [],  # noqa: B006
    max_matches: Annotated[int, Field(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    """Find all matches of a regular expression (Python syntax) in a text, with their groups and positions.

    Guarded: the pattern is at most 500 characters, the text at most 200,000, and matching stops with an error
    after one second (catastrophic backtracking).

    Args:
        pattern: The regular expression, e.g. "([0-9]{4})-([0-9]{2})". Named groups are also reported by name.
        text: The text to search.
        flags: Any of "ignorecase", "multiline", "dotall".
        max_matches: Stop after this many matches.
    """
    flag_bits = 0
    for flag in flags:
        flag_bits |= _FLAGS[flag]
    try:
        compiled = regex.compile(pattern, flag_bits | regex.VERSION0)
    except regex.error as exc:
        raise ToolArgumentsInvalid(f"invalid regular expression: {exc}", field="args.pattern") from None
    matches: list[dict[str, Any]] = []
    truncated = False
    try:
        for match in compiled.finditer(text, timeout=REGEX_TIMEOUT_S):
            if len(matches) == max_matches:
                truncated = True
                break
            matches.append(
                {
                    "match": match.group(0),
                    "start": match.start(),
                    "end": match.end(),
                    "groups": list(match.groups()),
                    "named": match.groupdict(),
                }
            )
    except TimeoutError:
        raise ToolArgumentsInvalid(
            f"the pattern took longer than {REGEX_TIMEOUT_S:g} s (catastrophic backtracking?); simplify it",
            field="args.pattern",
        ) from None
    return {"count": len(matches), "truncated": truncated, "matches": matches}


def hash_text(
    text: Text, algorithm: Literal["sha256", "sha1", "sha512", "md5", "blake2b", "sha3_256"] = "sha256"
) -> dict[str, Any]:
    """Hash a text's UTF-8 bytes and return the hex digest (md5 and sha1 for checksums only, not security).

    Args:
        text: The text to hash.
        algorithm: One of sha256, sha1, sha512, md5, blake2b, sha3_256.
    """
    digest = hashlib.new(algorithm, text.encode("utf-8"), usedforsecurity=False).hexdigest()
    return {"algorithm": algorithm, "hex": digest, "bytes": len(text.encode("utf-8"))}


Scheme = Literal["base64", "base64url", "hex", "url"]


def encode_text(text: Text, scheme: Scheme = "base64") -> dict[str, Any]:
    """Encode a text's UTF-8 bytes as base64, URL-safe base64, hexadecimal, or URL percent-encoding.

    Args:
        text: The text to encode.
        scheme: One of base64, base64url, hex, url.
    """
    data = text.encode("utf-8")
    if scheme == "url":
        encoded = urllib.parse.quote(text, safe="")
    elif scheme == "hex":
        encoded = data.hex()
    else:
        encoded = (base64.urlsafe_b64encode if scheme == "base64url" else base64.b64encode)(data).decode("ascii")
    return {"scheme": scheme, "result": encoded}


def decode_text(text: Text, scheme: Scheme = "base64") -> dict[str, Any]:
    """Decode base64, URL-safe base64, hexadecimal or URL percent-encoding back to UTF-8 text.

    Args:
        text: The encoded text.
        scheme: One of base64, base64url, hex, url.
    """
    try:
        if scheme == "url":
            return {"scheme": scheme, "result": urllib.parse.unquote(text, errors="strict")}
        cleaned = "".join(text.split())
        if scheme == "hex":
            data = bytes.fromhex(cleaned)
        else:
            padded = cleaned + "=" * (-len(cleaned) % 4)
            altchars = b"-_" if scheme == "base64url" else None
            data = base64.b64decode(padded, altchars=altchars, validate=True)
        return {"scheme": scheme, "result": data.decode("utf-8")}
    except (ValueError, binascii.Error) as exc:  # UnicodeDecodeError is a ValueError
        raise ToolArgumentsInvalid(f"not valid {scheme}: {exc}", field="args.text") from None
