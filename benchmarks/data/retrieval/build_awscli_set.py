"""Build a held-out tool-search query set (``awscli_queries.jsonl``) from the AWS CLI's own examples.

Source: the ``awscli`` wheel from PyPI (Apache-2.0) ships ``awscli/examples/<command>/<subcommand>.rst``: worked CLI
examples whose titles ("**Example 1: To create a bucket**") and lead sentences ("The following ``create-bucket``
example creates a bucket named ...") were written by other authors, at other times, than botocore's
``examples-1.json`` that ``aws_queries.jsonl`` comes from. The queries point at the SAME tool catalog
(``aws_tools.jsonl``); nothing in the catalog changes.

Recipe:

* Names: the CLI command folder is the botocore service name, except where the CLI renames a service (read from the
  wheel's ``utils.rename_command(command_table, '<service>', '<command>')`` calls: ``s3api`` -> ``s3``,
  ``configservice`` -> ``config``, ``deploy`` -> ``codedeploy``). The subcommand is botocore's ``xform_name`` of the
  operation (``CreateBucket`` -> ``create-bucket``), so it maps back by dropping the hyphens and matching the
  operation name case-insensitively. Only examples whose ``<service>_<Operation>`` is in ``aws_tools.jsonl`` are
  kept; the service's display name (for the templates) comes from the botocore model's metadata.
* ``title``: a bold title that reads "To ..." (optionally after "Example N:", "N." or a "[EC2-VPC]" tag), made
  imperative and given the service's name with ``build_aws_set.with_service`` (the same five templates).
* ``description``: the first sentence of the paragraph under the title when it opens "The following ``<op>``
  example ...", through ``build_aws_set.imperative_description`` (the same lead-in removal and verb fix).
* At most one title and one description per operation (as in the AWS set), from its first usable example.
* ``multi``: ``build_aws_set.multi_queries`` over these titles (the same connectors, the same seed), 400 requests.
* Dropped: a query whose normalised text (lower case, single spaces, no final punctuation) equals a query of
  ``aws_queries.jsonl`` (for titles: under any of the five service templates) or the first sentence of its gold
  tool's description.

Every query has ``split: "heldout"``: it is for one look after a change is designed on ``aws_queries.jsonl``, not for
choosing anything. The output is deterministic (sorted files, seeded sampling).

Usage::

    pip download --no-deps awscli==1.46.3 botocore==1.44.5 -d /tmp/wheels
    python benchmarks/data/retrieval/build_awscli_set.py /tmp/wheels/awscli-1.46.3-py3-none-any.whl \\
        /tmp/wheels/botocore-1.44.5-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from benchmarks.data.retrieval.build_aws_set import (
    MULTI_QUERIES,
    SERVICE_TEMPLATES,
    Wheel,
    first_sentence,
    imperative_description,
    imperative_title,
    multi_queries,
    normalised,
    service_name,
    with_service,
    write_queries,
)

HERE = Path(__file__).resolve().parent
_RENAME = re.compile(r"rename_command\(\s*command_table\s*,\s*'([\w-]+)'\s*,\s*'([\w-]+)'\s*\)")
_EXAMPLE = re.compile(r"^awscli/examples/([\w-]+)/([\w-]+)\.rst$")
_TITLE = re.compile(r"^\*\*(?:\[[^\]]*\]\s*)?(?:Example\s*\d*\s*:\s*|\d+\.\s*)?(To\s.+?)\*\*\s*$", re.I)
_FOLLOWING = re.compile(r"^The following\s+``[\w-]+``\s+(?=example)", re.I)
_LITERAL = re.compile(r"``([^`]*)``")
_LINK = re.compile(r"`([^`<]*?)\s*<[^>]*>`_+")
_SPACE = re.compile(r"\s+")


def plain(rst: str) -> str:
    """RST inline markup -> text (``literal`` and `link <url>`__ keep their words)."""
    text = _LINK.sub(r"\1", rst)
    text = _LITERAL.sub(r"\1", text)
    return _SPACE.sub(" ", text.replace("*", "")).strip()


def cli_renames(cli: zipfile.ZipFile) -> dict[str, str]:
    """CLI command name -> botocore service name, for the services the CLI renames."""
    renames: dict[str, str] = {}
    for name in cli.namelist():
        if name.startswith("awscli/customizations/") and name.endswith(".py"):
            for service, command in _RENAME.findall(cli.read(name).decode()):
                renames[command] = service
    return renames


def examples(rst: str) -> list[tuple[str, str]]:
    """(title, first paragraph under it) of each "To ..." example in a CLI example page."""
    out: list[tuple[str, str]] = []
    lines = rst.splitlines()
    for i, line in enumerate(lines):
        match = _TITLE.match(line.strip())
        if not match:
            continue
        paragraph: list[str] = []
        for following in lines[i + 1:]:
            if following.strip():
                if following.startswith((" ", "\t")) or following.strip().startswith("**"):
                    break
                paragraph.append(following.strip())
            elif paragraph:
                break
        out.append((plain(match.group(1)), " ".join(paragraph)))
    return out


def lead_sentence(paragraph: str) -> str | None:
    """The paragraph's first sentence as "The following example ...", if it opens "The following ``op`` example"."""
    if not _FOLLOWING.match(paragraph):
        return None
    sentence = first_sentence(plain(_FOLLOWING.sub("The following ", paragraph)))
    return sentence.rstrip(":").rstrip()


def build(cli_path: Path, botocore_path: Path, out_dir: Path) -> int:
    cli = zipfile.ZipFile(cli_path)
    renames = cli_renames(cli)
    tools = [json.loads(line) for line in (out_dir / "aws_tools.jsonl").open()]
    catalog = {t["name"].lower(): t for t in tools}
    botocore = Wheel(botocore_path)
    models = botocore.latest("service-2.json")
    names: dict[str, str] = {}
    aws_queries = {normalised(json.loads(line)["query"]) for line in (out_dir / "aws_queries.jsonl").open()}
    singles: list[dict[str, Any]] = []
    for path in sorted(cli.namelist()):
        match = _EXAMPLE.match(path)
        if not match:
            continue
        service = renames.get(match.group(1), match.group(1))
        tool = catalog.get(f"{service}_{match.group(2).replace('-', '')}".lower())
        if tool is None or service not in models:
            continue
        if service not in names:
            names[service] = service_name(botocore.load(models[service])["metadata"])
        name = names[service]
        lead = normalised(first_sentence(tool["description"]))
        op_name = tool["name"].split("_", 1)[1]
        seen: set[str] = set()
        for number, (title, paragraph) in enumerate(examples(cli.read(path).decode("utf-8", "replace"))):
            sentence = lead_sentence(paragraph)
            for kind, text in (("title", imperative_title(title)),
                               ("description", imperative_description(sentence) if sentence else None)):
                if not text or kind in seen or normalised(text) in seen or normalised(text) == lead:
                    continue
                renderings = [text] if kind == "description" else [text, *(
                    t.format(q=text, s=name) for t in SERVICE_TEMPLATES)]
                if any(normalised(r) in aws_queries for r in renderings):
                    continue
                seen.update((kind, normalised(text)))
                qid = f"awscli.{service}.{op_name}.{kind}.{number}"
                query = with_service(qid, text, name) if kind == "title" else text
                singles.append({"id": qid, "kind": kind, "query": query[0].upper() + query[1:],
                                "gold": [tool["name"]], "parts": [query], "_bare": text, "_service": name})
    queries = singles + multi_queries(singles, MULTI_QUERIES)
    for q in queries:
        q["split"] = "heldout"
        q.pop("_bare", None)
        q.pop("_service", None)
    write_queries(out_dir / "awscli_queries.jsonl", queries)
    return len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("awscli", type=Path, help="path to an awscli wheel (pip download --no-deps awscli)")
    parser.add_argument("botocore", type=Path, help="path to the botocore wheel aws_tools.jsonl was built from")
    parser.add_argument("--out", type=Path, default=HERE, help="folder with aws_tools.jsonl and aws_queries.jsonl")
    args = parser.parse_args()
    print(f"wrote {build(args.awscli, args.botocore, args.out)} queries to {args.out / 'awscli_queries.jsonl'}")


if __name__ == "__main__":
    main()
