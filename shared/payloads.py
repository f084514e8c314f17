"""Payload store: results too large to travel inline through Durable history go here and are passed by reference.

Azure Storage queue messages carry at most 45 KB and the Durable Task Scheduler 1 MiB, so large tool results are
written to Blob Storage (Azurite locally) or, with no storage configured, to a local folder; the orchestrator keeps
a small reference. References are opaque strings: ``blob:<container>/<name>`` or ``file:<name>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shared.settings import env_int, env_str

__all__ = [
    "BlobPayloadStore",
    "LocalPayloadStore",
    "PayloadSettings",
    "PayloadStore",
    "build_payload_store",
    "container_client",
    "ref_of_run",
    "root_run_id",
    "run_object",
]


class PayloadStore(Protocol):
    """Stores JSON values by content; returns references that any instance of the app can read back."""

    def put(self, value: Any, *, prefix: str) -> str: ...

    def get(self, ref: str) -> Any: ...

    def delete_run(self, run_id: str) -> int:
        """Delete what was stored for a run (its prefix, and its task's sub-runs ``<run id>:turn<n>``); the count."""
        ...


def root_run_id(run_id: str) -> str:
    """The run a (sub-)run belongs to: a task's sub-runs are ``<run id>:turn<n>``, and a run's own id has no colon."""
    return run_id.split(":", 1)[0]


def ref_of_run(ref: str, run_id: str) -> bool:
    """Whether payload reference ``ref`` names something stored for ``run_id`` (or its task's sub-runs): a reference
    read back for a run must be one of its own, never one a tool's output shaped to point elsewhere."""
    name = ref.removeprefix("file:") if ref.startswith("file:") else ref.removeprefix("blob:").partition("/")[2]
    return bool(ref.startswith(("file:", "blob:")) and _run_folder(root_run_id(run_id)).match(name)
                and ".." not in name)


def run_object(payloads: PayloadStore, ref: str, run_id: str, what: str) -> dict[str, Any]:
    """The JSON object stored under ``ref`` for ``run_id``. Raises ``ValueError`` naming ``what`` for a reference
    that is not the run's own (checked before reading) or a value that is not an object."""
    if not ref_of_run(ref, run_id):
        raise ValueError(f"{what} of another run")
    value = payloads.get(ref)
    if not isinstance(value, dict):
        raise ValueError(f"{what} that holds no object")
    return value


def _run_folder(run_id: str) -> re.Pattern[str]:
    """The folders a run's payloads live in: ``<run id>`` and its sub-runs' ``<run id>_turn<n>`` (prefixes are made
    safe for storage names, ``:`` becoming ``_``)."""
    return re.compile(re.escape(_safe_prefix(run_id)) + r"(_turn\d+)?/")


def _encode(value: Any) -> tuple[bytes, str]:
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return data, hashlib.sha256(data).hexdigest()


def _safe_prefix(prefix: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in prefix)[:100] or "payload"


class LocalPayloadStore:
    """A folder on local disk: for the devhost and single-machine runs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def put(self, value: Any, *, prefix: str) -> str:
        data, digest = _encode(value)
        name = f"{_safe_prefix(prefix)}/{digest}.json"
        path = self.root / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return f"file:{name}"

    def get(self, ref: str) -> Any:
        if not ref.startswith("file:"):
            raise ValueError(f"not a local payload reference: {ref!r}")
        name = ref.removeprefix("file:")
        path = (self.root / name).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"payload reference escapes the store: {ref!r}")
        return json.loads(path.read_bytes())

    def delete_run(self, run_id: str) -> int:
        folders = _run_folder(run_id)
        count = 0
        if not self.root.is_dir():
            return 0
        for folder in self.root.iterdir():
            if folder.is_dir() and folders.fullmatch(folder.name + "/"):
                for item in folder.iterdir():
                    item.unlink(missing_ok=True)
                    count += 1
                with contextlib.suppress(OSError):
                    folder.rmdir()
        return count


class BlobPayloadStore:
    """A Blob Storage container (``azure-storage-blob`` ``ContainerClient``), created on first use."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self._created = False

    def _ensure(self) -> None:
        if self._created:
            return
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()
        self._created = True

    def put(self, value: Any, *, prefix: str) -> str:
        from azure.core.exceptions import ResourceExistsError

        self._ensure()
        data, digest = _encode(value)
        name = f"{_safe_prefix(prefix)}/{digest}.json"
        with contextlib.suppress(ResourceExistsError):  # content-addressed: the same bytes are already there
            self.container.upload_blob(name, data, overwrite=False)
        return f"blob:{self.container.container_name}/{name}"

    def get(self, ref: str) -> Any:
        container, _, name = ref.removeprefix("blob:").partition("/")
        if not ref.startswith("blob:") or container != self.container.container_name:
            raise ValueError(f"not a payload reference of this store: {ref!r}")
        return json.loads(self.container.download_blob(name).readall())

    def delete_run(self, run_id: str) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        folders = _run_folder(run_id)
        count = 0
        try:
            names = [b.name for b in self.container.list_blobs(name_starts_with=_safe_prefix(run_id))]
        except ResourceNotFoundError:
            return 0
        for name in names:
            if folders.match(name):
                with contextlib.suppress(ResourceNotFoundError):
                    self.container.delete_blob(name)
                    count += 1
        return count


@dataclass(frozen=True)
class PayloadSettings:
    """Where large payloads go and from what size."""

    inline_max_bytes: int = 16 * 1024
    """Results up to this many bytes of JSON travel inline (WEFT_PAYLOAD_INLINE_MAX_BYTES)."""
    preview_bytes: int = 512
    """Characters of an offloaded result kept inline as a preview (WEFT_PAYLOAD_PREVIEW_BYTES)."""
    connection_string: str = ""
    """Storage connection string, e.g. Azurite's (WEFT_PAYLOAD_CONNECTION_STRING)."""
    account_url: str = ""
    """Blob endpoint reached with the managed identity (WEFT_BLOB_ACCOUNT_URL)."""
    container: str = "weft-payloads"
    """Blob container name (WEFT_PAYLOAD_CONTAINER)."""
    local_dir: str = ".weft-cache/payloads"
    """Folder used when no storage is configured (WEFT_PAYLOAD_DIR)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PayloadSettings:
        env = os.environ if env is None else env
        return cls(
            inline_max_bytes=env_int(env, "WEFT_PAYLOAD_INLINE_MAX_BYTES", cls.inline_max_bytes, minimum=256),
            preview_bytes=env_int(env, "WEFT_PAYLOAD_PREVIEW_BYTES", cls.preview_bytes, minimum=0),
            connection_string=env_str(env, "WEFT_PAYLOAD_CONNECTION_STRING", cls.connection_string),
            account_url=env_str(env, "WEFT_BLOB_ACCOUNT_URL", cls.account_url),
            container=env_str(env, "WEFT_PAYLOAD_CONTAINER", cls.container),
            local_dir=env_str(env, "WEFT_PAYLOAD_DIR", cls.local_dir),
        )


def container_client(settings: PayloadSettings, container: str, credential: Any = None, **options: Any) -> Any | None:
    """A ``ContainerClient`` for ``container`` in the configured storage account (connection string, or account URL
    with the managed identity), or None when no storage is configured. ``options`` go to the client (e.g.
    ``retry_total``, ``connection_timeout``)."""
    if settings.connection_string:
        from azure.storage.blob import ContainerClient

        return ContainerClient.from_connection_string(settings.connection_string, container, **options)
    if settings.account_url:
        from azure.identity import DefaultAzureCredential
        from azure.storage.blob import ContainerClient

        return ContainerClient(settings.account_url, container, credential=credential or DefaultAzureCredential(),
                               **options)
    return None


def build_payload_store(settings: PayloadSettings, credential: Any = None) -> PayloadStore:
    """Blob Storage when configured (connection string, or account URL + credential), else the local folder."""
    container = container_client(settings, settings.container, credential)
    return BlobPayloadStore(container) if container is not None else LocalPayloadStore(settings.local_dir)
