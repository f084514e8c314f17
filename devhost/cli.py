"""Command line: ``python -m devhost serve`` (the ``func start`` stand-in) and ``python -m devhost run``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from devhost.host import DevHost, HostOptions
from devhost.index import AppLoadError

__all__ = ["main"]

QUIET_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "httpx", "httpx2", "httpcore", "httpcore2")
"""Kept at WARNING: they log each request (full URL with its query string, headers) at INFO or DEBUG."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--app-dir", default=os.environ.get("DEVHOST_APP_DIR", "."), help="folder of function_app.py")
    parser.add_argument(
        "--db", default=os.environ.get("DEVHOST_DB", ".devhost/state.sqlite"), help="SQLite state file, or :memory:"
    )
    parser.add_argument("--log-level", default=os.environ.get("DEVHOST_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the app's HTTP routes and the Durable API (like `func start`)")
    serve.add_argument("--host", default=os.environ.get("DEVHOST_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("DEVHOST_PORT", "7071")))
    serve.add_argument("--no-queues", action="store_true", help="do not poll queue triggers")
    serve.add_argument("--no-timers", action="store_true", help="do not fire timer triggers")
    serve.add_argument(
        "--keys",
        action="store_true",
        default=os.environ.get("DEVHOST_KEYS", "").lower() in ("1", "true", "yes"),
        help="require function keys like the host (x-functions-key or ?code=); off by default, as with Core Tools",
    )
    serve.add_argument(
        "--keys-file",
        default=os.environ.get("DEVHOST_KEYS_FILE"),
        help="JSON file of the keys (default: keys.json beside the state file; created with random keys)",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=int(os.environ.get("DEVHOST_MAX_BODY_BYTES", str(100 * 1024 * 1024)))
    )
    serve.add_argument("--max-url-bytes", type=int, default=int(os.environ.get("DEVHOST_MAX_URL_BYTES", "4096")))
    serve.add_argument(
        "--cpus",
        default=os.environ.get("DEVHOST_CPUS", ""),
        help="run on these CPUs only, e.g. '1' (default: all). The devhost's Python holds one interpreter lock: on one "
        "CPU its threads hand it over without crossing cores (~20%% less CPU per run in benchmarks/throughput.py). "
        "Processes the app starts (sandbox workers) inherit it",
    )
    run = sub.add_parser("run", help="run one orchestration headless and print its status and output")
    run.add_argument("orchestrator")
    run.add_argument("--input", help="JSON file with the orchestration input ('-' for stdin)")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for completion")
    return parser


def _read_input(path: str | None) -> object:
    if path is None:
        return None
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AppLoadError(f"--input {path}: not valid JSON ({exc})") from exc


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return _serve(args)
        return _run(args)
    except AppLoadError as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2


def pin_cpus(spec: str) -> set[int] | None:
    """Run every thread of this process, and what it starts later, on the CPUs ``spec`` lists (``"1"``, ``"0,1"``);
    None for an empty ``spec``. :class:`AppLoadError` for CPUs this process may not use."""
    if not spec.strip():
        return None
    try:
        cpus = {int(part) for part in spec.split(",") if part.strip()}
        allowed = os.sched_getaffinity(0)
    except ValueError:
        raise AppLoadError(f"--cpus {spec[:40]!r}: a comma-separated list of CPU numbers, e.g. '1'") from None
    except AttributeError:
        raise AppLoadError("--cpus: this platform cannot set CPU affinity") from None
    if not cpus or not cpus <= allowed:
        raise AppLoadError(f"--cpus {spec[:40]!r}: this process may use CPUs {sorted(allowed)}")
    for task in os.listdir("/proc/self/task"):  # threads an import started too; later ones inherit it
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task), cpus)
    return cpus


def _serve(args: argparse.Namespace) -> int:
    cpus = pin_cpus(args.cpus)
    options = HostOptions(
        app_dir=args.app_dir,
        db=args.db,
        host=args.host,
        port=args.port,
        poll_queues=not args.no_queues,
        run_timers=not args.no_timers,
        keys=args.keys,
        keys_file=args.keys_file,
        max_body_bytes=args.max_body_bytes,
        max_url_bytes=args.max_url_bytes,
    )
    host = DevHost(options).start()
    print(f"devhost: serving {options.app_dir.resolve()} at {host.base_url} (state: {args.db})"
          + (f" on CPUs {sorted(cpus)}" if cpus else ""), flush=True)
    if host.keys is not None:
        print(f"devhost: function keys required; the keys are in {options.keys_file.resolve()}", flush=True)
    else:
        print("devhost: function keys off (as with Core Tools): anyone who can reach this port can call the Durable "
              "HTTP API (/runtime/webhooks/durabletask: read any instance, raise events, terminate), whatever the "
              "app's own caller checks; use --keys when that matters", flush=True)
    if host.mcp is not None and host.mcp.enabled:
        print(f"devhost: MCP server endpoint: {host.base_url}/runtime/webhooks/mcp", flush=True)
    for route in host.index.routes:
        methods = ",".join(sorted(route.methods)) if route.methods else "ANY"
        print(
            f"  {route.entry.name}: [{methods}] {host.base_url}/{host.index.route_prefix}/{route.template}", flush=True
        )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    host.stop()
    return 0


def _run(args: argparse.Namespace) -> int:
    value = _read_input(args.input)
    options = HostOptions(app_dir=args.app_dir, db=args.db, serve_http=False, poll_queues=False, run_timers=False)
    host = DevHost(options).start()
    try:
        if args.orchestrator not in host.index.orchestrators:
            known = ", ".join(sorted(host.index.orchestrators)) or "none"
            raise AppLoadError(f"no orchestrator named {args.orchestrator!r} (the app defines: {known})")
        instance_id = host.start_new(args.orchestrator, value)
        try:
            status = host.wait_for(instance_id, timeout=args.timeout)
        except TimeoutError as exc:
            print(f"devhost: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(status, indent=2, default=str))
        return 0 if status["runtimeStatus"] == "Completed" else 1
    finally:
        host.stop()
