"""A real MCP server for tests, built with the SDK's ``MCPServer`` (mcp 2.x's name for FastMCP): a small notes API.

Tools: ``add`` (read-only), ``get_note`` (structured result), ``list_notes``, ``create_note`` (additive, idempotent),
``delete_note`` (destructive), ``echo_env`` (reads an environment variable), ``fail`` (always an ``isError`` result),
``mixed`` (two content blocks) and ``sleep`` (for timeouts).

Run it as a script (it imports nothing from this repository, so it runs from any working directory):

- ``python tests/fakes/mcp_server.py stdio`` speaks MCP over stdin/stdout;
- ``python tests/fakes/mcp_server.py http`` binds 127.0.0.1 on an ephemeral port, prints ``READY <port>`` once the
  socket listens, and serves streamable HTTP at ``/mcp``.

From tests: :func:`stdio_source_config` / :func:`stdio_command` for stdio, :func:`start_http_server` (returns a
:class:`McpHttpServer` with ``url`` and ``stop()``) for HTTP.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()

__all__ = ["SCRIPT", "McpHttpServer", "build_server", "start_http_server", "stdio_command", "stdio_source_config"]


def build_server() -> Any:
    """The notes server (an ``mcp.server.mcpserver.MCPServer``); state lives in the process."""
    import anyio
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ImageContent, TextContent, ToolAnnotations

    server = MCPServer("weft-test-notes", log_level="WARNING")
    notes: dict[str, dict[str, str]] = {"n1": {"id": "n1", "title": "first", "body": "hello"}}

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def get_note(note_id: str) -> dict[str, str]:
        """Get one note by id."""
        if note_id not in notes:
            raise ToolError(f"no note {note_id!r}")
        return notes[note_id]

    @server.tool(structured_output=False)
    def list_notes() -> str:
        """All notes, as JSON text (no structured content)."""
        import json

        return json.dumps(sorted(notes.values(), key=lambda note: note["id"]))

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True))
    def create_note(note_id: str, title: str, body: str = "") -> dict[str, str]:
        """Create (or overwrite) a note."""
        notes[note_id] = {"id": note_id, "title": title, "body": body}
        return notes[note_id]

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=False))
    def delete_note(note_id: str) -> str:
        """Delete a note."""
        notes.pop(note_id, None)
        return f"deleted {note_id}"

    @server.tool()
    def echo_env(name: str) -> str:
        """The value of an environment variable of the server process."""
        return os.environ.get(name, "")

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails with ``reason``."""
        raise ToolError(f"refused: {reason}")

    @server.tool(structured_output=False)
    def mixed() -> list[Any]:
        """Two content blocks: text and an image."""
        image = ImageContent(type="image", data="aGk=", mime_type="image/png")
        return [TextContent(type="text", text="caption"), image]

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    async def sleep(seconds: float) -> str:
        """Sleep, then answer."""
        await anyio.sleep(seconds)
        return "awake"

    return server


def stdio_command() -> list[str]:
    """The command line that runs this server over stdio."""
    return [sys.executable, str(SCRIPT), "stdio"]


def stdio_source_config(alias: str | None = "notes", **extra: Any) -> dict[str, Any]:
    """A ``WEFT_TOOL_SOURCES`` entry for this server over stdio."""
    command = stdio_command()
    return {"type": "mcp", "transport": "stdio", "command": command[0], "args": command[1:], "alias": alias, **extra}


@dataclass
class McpHttpServer:
    """This server in a child process over streamable HTTP."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        """The MCP endpoint, ``http://127.0.0.1:<port>/mcp``."""
        return f"http://127.0.0.1:{self.port}/mcp"

    def source_config(self, alias: str | None = "notes", **extra: Any) -> dict[str, Any]:
        """A ``WEFT_TOOL_SOURCES`` entry for this server."""
        return {"type": "mcp", "transport": "http", "url": self.url, "alias": alias, **extra}

    def stop(self) -> None:
        """Terminate the process (kill it if it does not exit within 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> McpHttpServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_http_server(timeout: float = 30.0) -> McpHttpServer:
    """Start the server over streamable HTTP and return once its socket listens (it prints its port then)."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "http"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
        if not ready:
            process.kill()
            raise TimeoutError(f"MCP test server did not start within {timeout} s")
        chunk = os.read(process.stdout.fileno(), 64)
        if not chunk:
            raise RuntimeError(f"MCP test server exited with {process.wait()} before listening")
        line += chunk
    word, _, port = line.decode().strip().partition(" ")
    assert word == "READY", line
    return McpHttpServer(process, int(port))


def _serve_http() -> None:
    import anyio
    import uvicorn

    app = build_server().streamable_http_app(host="127.0.0.1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue from here on, so READY is true before uvicorn accepts
    print(f"READY {sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    anyio.run(lambda: server.serve(sockets=[sock]))


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "http":
        _serve_http()
    else:
        build_server().run("stdio")
