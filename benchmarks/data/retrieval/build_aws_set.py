"""Regenerate the AWS tool-search set (``aws_tools.jsonl`` and ``aws_queries.jsonl``) from botocore's API models.

Source: the ``botocore`` wheel from PyPI (Apache-2.0), which ships every AWS service's API model
(``service-2.json``: operations, documentation, input shapes) and, for 44 services, worked examples
(``examples-1.json``: a title and a description written for each example, separately from the operation docs).

Tools: every operation of the 44 services that have examples, plus the operations of further services (in name
order) as distractors until the catalog has at least 5,000 tools. Each becomes an OpenAI-shaped spec: name
``<service>_<Operation>``, description = the operation documentation without notes and links (first paragraphs,
<= 400 characters), parameters = up to 10 input members (required first) with their first documentation sentence,
``tags`` = [service], ``source`` = ``aws:<service>``.

Queries (labels = the operation the example belongs to):

* ``title``: the example title ("To create a bucket in a specific region") as an imperative ("create a bucket in a
  specific region"), with the service named by one of five templates ("... in Amazon S3", "Using Amazon S3, ...").
* ``description``: the example description ("The following example creates a bucket. The request specifies ...")
  with the "The following example" lead-in removed and the first verb made imperative.
* ``multi``: 2-3 imperative titles, each followed by "in/with/on <service>", joined by a connector template
  ("A, then B", "First A; after that, B", "A and B", "A, B, and finally C"); half within one service, half across
  services. Labels = all their operations.

Queries that are the same text as the first sentence of their tool's description are dropped (leakage guard). Each
query gets a deterministic ``split``: ``dev`` (30%, used to choose weights) or ``test`` (70%, reported).

Usage::

    pip download --no-deps botocore==1.44.5 -d /tmp/wheels
    python benchmarks/data/retrieval/build_aws_set.py /tmp/wheels/botocore-1.44.5-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import random
import re
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIN_TOOLS = 5000
MAX_PARAMS = 10
MAX_DESCRIPTION = 400
MAX_PARAM_DOC = 120
MULTI_QUERIES = 400

_TAG = re.compile(r"<[^>]+>")
_NOTE = re.compile(r"<(note|important|examples?)>.*?</\1>", re.S | re.I)
_LINK = re.compile(r"<a [^>]*>(.*?)</a>", re.S)
_SPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def clean(doc: str) -> str:
    """HTML documentation -> plain text without notes."""
    doc = _NOTE.sub(" ", doc or "")
    doc = _LINK.sub(r"\1", doc)
    doc = doc.replace("</p>", "\n")
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", doc))).strip()


def shorten(text: str, limit: int) -> str:
    """Whole sentences up to ``limit`` characters (at least the first, cut hard if needed)."""
    out = ""
    for sentence in _SENTENCE.split(text):
        if out and len(out) + 1 + len(sentence) > limit:
            break
        out = f"{out} {sentence}".strip()
    return out[:limit].rstrip()


def first_sentence(text: str) -> str:
    return _SENTENCE.split(text, maxsplit=1)[0] if text else ""


def normalised(text: str) -> str:
    """Lower case, single spaces, no closing punctuation: how two query texts are compared for leaks."""
    return _SPACE.sub(" ", text.lower()).strip().rstrip(".:;!? ")


class Wheel:
    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(path)
        self.names = self.zip.namelist()

    def load(self, name: str) -> Any:
        raw = self.zip.read(name)
        return json.loads(gzip.decompress(raw) if name.endswith(".gz") else raw)

    def latest(self, kind: str) -> dict[str, str]:
        found: dict[str, tuple[str, str]] = {}
        for name in self.names:
            parts = name.split("/")
            if len(parts) == 5 and parts[:2] == ["botocore", "data"] and parts[4].startswith(kind):
                service, version = parts[2], parts[3]
                if service not in found or version > found[service][0]:
                    found[service] = (version, name)
        return {s: n for s, (_, n) in found.items()}


JSON_TYPES = {"string": "string", "integer": "integer", "long": "integer", "boolean": "boolean", "double": "number",
              "float": "number", "timestamp": "string", "blob": "string", "list": "array", "map": "object",
              "structure": "object"}


def tool_spec(service: str, op_name: str, op: dict[str, Any], shapes: dict[str, Any]) -> dict[str, Any]:
    description = shorten(clean(op.get("documentation", "")), MAX_DESCRIPTION)
    properties: dict[str, Any] = {}
    required: list[str] = []
    shape = shapes.get(op.get("input", {}).get("shape", ""), {})
    members = shape.get("members", {})
    wanted = [m for m in shape.get("required", []) if m in members]
    wanted += [m for m in members if m not in wanted]
    for member in wanted[:MAX_PARAMS]:
        spec = members[member]
        target = shapes.get(spec.get("shape", ""), {})
        prop: dict[str, Any] = {"type": JSON_TYPES.get(target.get("type", "string"), "string")}
        doc = shorten(first_sentence(clean(spec.get("documentation", "") or target.get("documentation", ""))),
                      MAX_PARAM_DOC)
        if doc:
            prop["description"] = doc
        if target.get("enum"):
            prop["enum"] = target["enum"][:8]
        properties[member] = prop
        if member in shape.get("required", []):
            required.append(member)
    return {
        "name": f"{service}_{op_name}",
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
        "tags": [service],
        "source": f"aws:{service}",
    }


SERVICE_TEMPLATES = ("{q} in {s}", "Using {s}, {q}", "{s}: {q}", "I need to {q} with {s}", "{q} ({s})")
MULTI_TEMPLATES = {
    2: ("{a}, then {b}", "First {a}; after that, {b}", "{a} and {b}", "{a}. Then {b}", "Please {a} and then {b}"),
    3: ("{a}, {b}, and finally {c}", "{a}, then {b}, then {c}", "First {a}, then {b}. Also {c}"),
}
_LEAD = re.compile(r"^(?:the following|this|the)\s+(?:\w+\s+)?examples?\s+(?:\w+\s+)?(?=[a-z]+s\b)", re.I)


def imperative_title(title: str) -> str | None:
    title = _SPACE.sub(" ", title or "").strip().rstrip(".")
    match = re.match(r"^to\s+(.*)$", title, re.I)
    if not match or len(match.group(1).split()) < 2:
        return None
    return match.group(1)[0].lower() + match.group(1)[1:]


def imperative_description(description: str) -> str | None:
    text = _SPACE.sub(" ", clean(description or "")).strip()
    match = _LEAD.match(text)
    if not match:
        return None
    rest = text[match.end():]
    verb, _, tail = rest.partition(" ")
    if verb.endswith("ies"):
        verb = verb[:-3] + "y"
    elif verb.endswith(("ches", "shes", "sses", "xes")):
        verb = verb[:-2]
    elif verb.endswith("s"):
        verb = verb[:-1]
    out = f"{verb} {tail}".strip()
    return out if len(out.split()) >= 3 else None


def with_service(qid: str, title: str, service: str) -> str:
    """The imperative ``title`` with the service named by one of the five templates (chosen by the query id)."""
    template = SERVICE_TEMPLATES[int(hashlib.sha256(qid.encode()).hexdigest(), 16) % len(SERVICE_TEMPLATES)]
    return template.format(q=title, s=service)


def service_name(meta: dict[str, Any]) -> str:
    return meta.get("serviceAbbreviation") or meta.get("serviceFullName") or meta.get("serviceId", "")


def stable_split(qid: str) -> str:
    return "dev" if int(hashlib.sha256(qid.encode()).hexdigest(), 16) % 10 < 3 else "test"


def build(wheel_path: Path, out_dir: Path) -> tuple[int, int]:
    wheel = Wheel(wheel_path)
    models = wheel.latest("service-2.json")
    examples = {s: wheel.load(n).get("examples", {}) for s, n in wheel.latest("examples-1.json").items()}
    examples = {s: e for s, e in examples.items() if e and s in models}
    services = sorted(examples)
    for extra in sorted(models):
        total = sum(len(wheel.load(models[s])["operations"]) for s in services)
        if total >= MIN_TOOLS:
            break
        if extra not in services:
            services.append(extra)
    tools: list[dict[str, Any]] = []
    singles: list[dict[str, Any]] = []
    for service in services:
        model = wheel.load(models[service])
        name = service_name(model["metadata"])
        for op_name, op in sorted(model["operations"].items()):
            spec = tool_spec(service, op_name, op, model["shapes"])
            tools.append(spec)
            lead = first_sentence(spec["description"]).lower().rstrip(".")
            seen: set[str] = set()
            for number, example in enumerate(examples.get(service, {}).get(op_name, [])):
                for kind, text in (("title", imperative_title(example.get("title", ""))),
                                   ("description", imperative_description(example.get("description", "")))):
                    if not text or text.lower() in seen or text.lower().rstrip(".") == lead or kind in seen:
                        continue
                    seen.update((text.lower(), kind))
                    qid = f"{service}.{op_name}.{kind}.{number}"
                    query = text
                    if kind == "title":
                        query = with_service(qid, text, name)
                    singles.append({"id": qid, "kind": kind, "query": query[0].upper() + query[1:],
                                    "gold": [spec["name"]], "parts": [query], "_bare": text, "_service": name})
    queries = singles + multi_queries(singles, MULTI_QUERIES)
    for q in queries:
        q["split"] = stable_split(q["id"])
        q.pop("_bare", None)
        q.pop("_service", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "aws_tools.jsonl").open("w") as f:
        for t in tools:
            f.write(json.dumps(t, separators=(",", ":")) + "\n")
    write_queries(out_dir / "aws_queries.jsonl", queries)
    return len(tools), len(queries)


def multi_queries(singles: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` multi-part requests joining 2-3 of the title queries (each with ``_bare`` text and ``_service``)."""
    rng = random.Random(20260101)
    titles = [q for q in singles if q["kind"] == "title"]
    by_service: dict[str, list[dict[str, Any]]] = {}
    for q in titles:
        by_service.setdefault(q["gold"][0].split("_", 1)[0], []).append(q)
    multis: list[dict[str, Any]] = []
    while len(multis) < count:
        n = 2 if rng.random() < 0.65 else 3
        if rng.random() < 0.5:
            pool = [qs for qs in by_service.values() if len(qs) >= n]
            parts = rng.sample(rng.choice(pool), n)
        else:
            parts = rng.sample(titles, n)
        if len({p["gold"][0] for p in parts}) < n:
            continue
        template = rng.choice(MULTI_TEMPLATES[n])
        texts = [f"{p['_bare']} {rng.choice(('in', 'with', 'on'))} {p['_service']}" for p in parts]
        query = template.format(**dict(zip("abc", texts, strict=False)))
        query = query[0].upper() + query[1:]
        qid = "multi." + ".".join(p["id"] for p in parts)
        multis.append({"id": qid, "kind": "multi", "query": query, "gold": [p["gold"][0] for p in parts],
                       "parts": texts})
    return multis


def write_queries(path: Path, queries: list[dict[str, Any]]) -> None:
    with path.open("w") as f:
        for q in queries:
            f.write(json.dumps(q, separators=(",", ":")) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="path to a botocore wheel (pip download --no-deps botocore)")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    n_tools, n_queries = build(args.wheel, args.out)
    print(f"wrote {n_tools} tools and {n_queries} queries to {args.out}")


if __name__ == "__main__":
    main()
