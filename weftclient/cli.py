"""``weft``: run plans and follow them live, list and inspect runs, approve calls, search and add tools.

Configuration: ``--url`` / ``WEFT_URL``, ``WEFT_FUNCTION_KEY``, ``WEFT_TOKEN`` or ``WEFT_TOKEN_SCOPE`` (see
:func:`weftclient.client.client_from_env`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from shared.api_schemas import RunView
from weftclient.client import ApiError, WeftClient, client_from_env

__all__ = ["app", "main"]

app = typer.Typer(help="Weft: durable tool orchestration from the command line.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
tools_app = typer.Typer(help="Search and add tools.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(tools_app, name="tools")
console = Console()
UrlOption = Annotated[str | None, typer.Option("--url", help="Weft's base URL (default $WEFT_URL or localhost:7071)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the JSON answer")]


def _client(url: str | None) -> WeftClient:
    return client_from_env(url)


def _short(value: Any, width: int = 48) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_table(view: RunView) -> Table:
    """The live table of a run: one row per step, and its progress in the title."""
    progress = view.progress
    done = f" {progress.done}/{progress.total} steps" if progress else ""
    failed = f", {progress.failed} failed" if progress and progress.failed else ""
    table = Table(title=f"run {view.id}: {view.status} ({view.stage or '-'}){done}{failed}", expand=False)
    for column in ("step", "tool", "status", "tries", "ms", "result"):
        table.add_column(column, justify="right" if column in ("tries", "ms") else "left")
    steps: list[dict[str, Any]] = []
    if view.result is not None:
        steps = [step.model_dump(mode="json") for step in view.result.steps]
    elif view.steps:
        steps = [step.model_dump(mode="json") for step in view.steps]
    for step in steps:
        shown = step.get("result") if step.get("status") == "succeeded" else (step.get("error") or {}).get("message")
        if shown is None:
            shown = step.get("result_preview", "")
        table.add_row(str(step.get("step_id")), str(step.get("tool")), str(step.get("status")),
                      str(step.get("attempts", "")), f"{step.get('latency_ms', 0) or 0:.1f}", _short(shown))
    if view.awaiting_approval:
        for call in view.awaiting_approval.calls:
            table.add_row(call.call_id, call.tool, "awaiting approval", "", "", _short(call.args_preview))
    return table


def _fail(exc: ApiError) -> None:
    console.print(f"[red]error[/red] {exc}")
    raise typer.Exit(2)


@app.command()
def run(plan: Annotated[Path, typer.Argument(help="A run request file (JSON), or - for stdin")],
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Show a live step table until it ends")] = False,
        idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
        url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Start a run from a request file (``{"mode": "plan", "plan": {...}}``)."""
    text = sys.stdin.read() if str(plan) == "-" else plan.read_text(encoding="utf-8")
    with _client(url) as client:
        try:
            links = client.start_run(json.loads(text), idempotency_key=idempotency_key)
            if not follow:
                console.print_json(links.model_dump_json()) if as_json else console.print(links.id)
                return
            with Live(console=console, auto_refresh=False, transient=False) as live:
                view = client.follow(links.id, on_update=lambda v: live.update(run_table(v), refresh=True))
        except ApiError as exc:
            _fail(exc)
            return
    if as_json:
        console.print_json(view.model_dump_json())
    raise typer.Exit(0 if view.status == "completed" else 1)


@runs_app.command("ls")
def runs_ls(limit: int = 20, status: str | None = None, everyone: Annotated[bool, typer.Option("--all")] = False,
            url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Your runs, newest first (one page)."""
    with _client(url) as client:
        try:
            page = client.list_runs(limit=limit, status=status, everyone=everyone)
        except ApiError as exc:
            _fail(exc)
            return
    if as_json:
        console.print_json(page.model_dump_json())
        return
    table = Table("id", "mode", "status", "stage", "progress", "created")
    for item in page.runs:
        progress = f"{item.progress.done}/{item.progress.total}" if item.progress else ""
        table.add_row(item.id, item.mode or "", item.status, item.stage or "", progress, item.created_at or "")
    console.print(table)
    if page.continuation:
        console.print(f"more: --continuation {page.continuation}")


@runs_app.command("get")
def runs_get(run_id: str, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """One run: status, steps, result."""
    with _client(url) as client:
        try:
            view = client.get_run(run_id)
        except ApiError as exc:
            _fail(exc)
            return
    console.print_json(view.model_dump_json(exclude_none=True)) if as_json else console.print(run_table(view))


@app.command()
def approve(run_id: str, call: Annotated[list[str] | None, typer.Option("--call", help="A call id (repeat)")] = None,
            deny: bool = False, reason: str = "", url: UrlOption = None) -> None:
    """Approve (or --deny) the tool calls a run waits on: those given with --call, else all of them."""
    with _client(url) as client:
        try:
            reply = client.approve(run_id, approved=not deny, reason=reason, call_ids=call or None)
        except ApiError as exc:
            _fail(exc)
            return
    console.print(f"{'approved' if reply.approved else 'denied'}: {', '.join(reply.call_ids)}")


@tools_app.command("search")
def tools_search(query: str, k: int = 10, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Search the catalog."""
    with _client(url) as client:
        try:
            reply = client.search_tools(query, k=k)
        except ApiError as exc:
            _fail(exc)
            return
    if as_json:
        console.print_json(reply.model_dump_json())
        return
    table = Table("tool", "score", "matched")
    for hit in reply.results:
        table.add_row(hit.name, f"{hit.score:.3f}", ", ".join(hit.matched_terms))
    console.print(table)


@tools_app.command("add-source")
def tools_add_source(
    kind: Annotated[str, typer.Argument(help="openapi or mcp")],
    source_url: Annotated[str, typer.Argument(help="The OpenAPI document's URL or the MCP server's endpoint")],
    alias: str | None = None, secret: Annotated[str | None, typer.Option(help="Name of a bound secret")] = None,
    header: str = "Authorization", url: UrlOption = None,
) -> None:
    """Register an OpenAPI document or a streamable-HTTP MCP server for every instance."""
    config: dict[str, Any] = {"type": kind, "url": source_url}
    if kind == "mcp":
        config["transport"] = "http"
    if alias:
        config["alias"] = alias
    if secret:
        config["auth"] = {"secret": secret, "header": header}
    with _client(url) as client:
        try:
            report = client.add_source(config)
        except ApiError as exc:
            _fail(exc)
            return
    console.print(f"{report.source_id[:12]} {report.type} {report.location}: {report.tool_count} tools"
                  + (f" ({report.error})" if report.error else ""))
    for name in report.tools:
        console.print(f"  {name}")


def main() -> None:
    """The ``weft`` entry point."""
    app()
