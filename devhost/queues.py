"""Queue triggers: poll the app's queues in Azure Storage (Azurite locally) with ``azure-storage-queue``.

Mirrors the Functions queue extension: messages are base64 by default (``messageEncoding``), fetched in batches,
deleted when the function succeeds, made visible again after ``visibilityTimeout`` when it fails, and moved to
``<queue>-poison`` once dequeued ``maxDequeueCount`` times.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StorageMessage

from devhost.index import FunctionEntry, FunctionIndex
from devhost.server import decode_queue_body

__all__ = ["QueueOptions", "QueuePoller"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueOptions:
    """host.json ``extensions.queues`` settings, with the extension's defaults where they suit local use."""

    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout_s: float = 0.0
    max_polling_interval_s: float = 2.0
    message_encoding: str = "base64"

    @classmethod
    def from_host(cls, host_config: dict[str, Any]) -> QueueOptions:
        queues = (host_config.get("extensions") or {}).get("queues") or {}
        return cls(
            batch_size=int(queues.get("batchSize", cls.batch_size)),
            max_dequeue_count=int(queues.get("maxDequeueCount", cls.max_dequeue_count)),
            visibility_timeout_s=_timespan(queues.get("visibilityTimeout"), cls.visibility_timeout_s),
            max_polling_interval_s=min(_timespan(queues.get("maxPollingInterval"), 2.0), 2.0),
            message_encoding=str(queues.get("messageEncoding", cls.message_encoding)).lower(),
        )


def _timespan(value: Any, default: float) -> float:
    """``hh:mm:ss`` or milliseconds → seconds."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value) / 1000.0
    parts = [float(p) for p in str(value).split(":")]
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


class QueuePoller:
    """One thread polling every queue-triggered function's queue; functions run on the server loop."""

    def __init__(
        self,
        index: FunctionIndex,
        run_on_loop: Callable[[Coroutine[Any, Any, Any]], Any],
        invoke: Callable[[FunctionEntry, Any], Coroutine[Any, Any, Any]],
    ) -> None:
        self.index = index
        self.options = QueueOptions.from_host(index.host_config)
        self._run_on_loop = run_on_loop
        self._invoke = invoke
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clients: dict[str, tuple[QueueClient, QueueClient]] = {}

    def start(self) -> bool:
        """Start polling; False (with a log line) when no function has a queue trigger or storage is not set."""
        if not self.index.queues:
            return False
        for entry in self.index.queues:
            setting = getattr(entry.trigger, "connection", None) or "AzureWebJobsStorage"
            conn = os.environ.get(setting) or os.environ.get(f"{setting}__connectionString")
            if not conn or (conn == "UseDevelopmentStorage=true" and not _azurite_up()):
                log.warning("queue trigger %s not polled: connection setting %s is not usable", entry.name, setting)
                continue
            name = entry.trigger.queue_name
            main = QueueClient.from_connection_string(conn, name)
            poison = QueueClient.from_connection_string(conn, f"{name}-poison")
            for client in (main, poison):
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
            self._clients[entry.name] = (main, poison)
        if not self._clients:
            return False
        self._thread = threading.Thread(target=self._loop, name="devhost-queues", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        idle = 0.05
        while not self._stop.is_set():
            handled = 0
            for entry in self.index.queues:
                clients = self._clients.get(entry.name)
                if clients is None:
                    continue
                try:
                    handled += self._poll(entry, *clients)
                except Exception:
                    log.exception("polling queue for %s failed", entry.name)
            idle = 0.05 if handled else min(idle * 2, self.options.max_polling_interval_s)
            self._stop.wait(idle)

    def _poll(self, entry: FunctionEntry, main: QueueClient, poison: QueueClient) -> int:
        visibility = max(30, int(self.options.visibility_timeout_s) + 30)
        messages = list(main.receive_messages(max_messages=self.options.batch_size, visibility_timeout=visibility))
        futures = [(m, self._run_on_loop(self._handle(entry, m))) for m in messages]
        for message, future in futures:
            ok = future.result()
            if ok:
                main.delete_message(message)
            elif (message.dequeue_count or 0) >= self.options.max_dequeue_count:
                log.error(
                    "Message %s has reached MaxDequeueCount of %d; moving it to queue '%s'",
                    message.id,
                    self.options.max_dequeue_count,
                    poison.queue_name,
                )
                poison.send_message(message.content)
                main.delete_message(message)
            else:
                main.update_message(message, visibility_timeout=int(self.options.visibility_timeout_s))
        return len(messages)

    async def _handle(self, entry: FunctionEntry, message: StorageMessage) -> bool:
        try:
            body = decode_queue_body(message.content, self.options.message_encoding)
        except ValueError as exc:
            log.error("queue %s message %s: %s", entry.trigger.queue_name, message.id, exc)
            return False
        msg = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            await self._invoke(entry, msg)
        except Exception as exc:
            log.warning(
                "Executed 'Functions.%s' (Failed, Id=%s): %s: %s", entry.name, message.id, type(exc).__name__, exc
            )
            return False
        return True


def send_messages(connection_setting: str, queue_name: str, texts: list[str], encoding: str = "base64") -> None:
    """Queue output binding: send each text to the queue, encoded as the queue trigger expects."""
    conn = os.environ.get(connection_setting) or os.environ.get(f"{connection_setting}__connectionString")
    if not conn:
        raise RuntimeError(f"queue output {queue_name!r}: app setting {connection_setting} is not set")
    client = QueueClient.from_connection_string(conn, queue_name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    for text in texts:
        client.send_message(encode_queue_body(text) if encoding == "base64" else text)


def _azurite_up() -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", 10001)) == 0


def encode_queue_body(body: bytes | str) -> str:
    """What a producer sends so the default (base64) queue trigger decodes ``body``."""
    raw = body.encode() if isinstance(body, str) else body
    return base64.b64encode(raw).decode()
