"""Per-request cost of callers and trust: a quota charge plus one audit record, and a bearer-token validation.

Run: python -m benchmarks.identity_bench [--requests N] [--azurite-requests N]
Cases:
- local: ``charge_request`` on SQLite (``quotas.sqlite``) + ``append`` on SQLite (``audit.sqlite``), as the devhost and
  single-machine runs do;
- Azurite: ``charge_request`` on Table Storage (ETag read-modify-write) + ``append`` to an append blob, on a private
  Azurite (loopback: network cost is that of a local socket, not of Azure);
- JWT: ``BearerValidator.validate`` of an RS256 token with the issuer's keys cached (no fetch), when
  ``shared/identity/tokens.py`` is present.
Prints p50/p95 in microseconds per operation and the machine's load average (a shared 2-core machine is noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.identity.audit import AuditRecord, AuditTrail  # noqa: E402
from shared.identity.audit_store import AppendBlobAuditStore, SqliteAuditStore  # noqa: E402
from shared.identity.quota_store import SqliteQuotaStore, TableQuotaStore  # noqa: E402
from shared.identity.quotas import Quotas, QuotaSettings  # noqa: E402

CALLERS = [f"tenant/{i:04d}" for i in range(50)]
ROLES = frozenset({"Runs.Submit"})
UNLIMITED = QuotaSettings(requests_per_minute=10**9, burst=10**9)
"""Limits no benchmark reaches: every charge is a full read-modify-write."""


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.median(ordered) * 1e6, p95 * 1e6


def timed(n: int, operation: Callable[[int], object]) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        operation(i)
        samples.append(time.perf_counter() - started)
    return samples


def report(label: str, samples: list[float]) -> None:
    p50, p95 = percentiles(samples)
    print(f"  {label:<36} p50 {p50:>9.0f} µs   p95 {p95:>9.0f} µs   (n={len(samples)})")


def record(i: int) -> AuditRecord:
    return AuditRecord(caller=CALLERS[i % len(CALLERS)], action="tool.execute", run_id=f"run-{i // 10}",
                       step_id=f"s{i % 10}", tool="send_email", args_sha256="0" * 64, outcome="ok", attempt=1,
                       correlation_id=uuid.uuid4().hex)


def bench_pair(name: str, quotas: Quotas, trail: AuditTrail, n: int) -> None:
    def charge(i: int) -> None:
        quotas.charge_request(CALLERS[i % len(CALLERS)], ROLES)

    def append(i: int) -> None:
        trail.append(record(i))

    def both(i: int) -> None:
        charge(i)
        append(i)

    print(f"{name}:")
    timed(min(20, n), both)  # create tables, containers, blobs
    charges, appends, pairs = timed(n, charge), timed(n, append), timed(n, both)
    report("charge_request", charges)
    report("audit append", appends)
    report("charge_request + append", pairs)


def bench_local(n: int) -> None:
    with tempfile.TemporaryDirectory() as state:
        quotas = Quotas(SqliteQuotaStore(Path(state) / "quotas.sqlite"), UNLIMITED)
        trail = AuditTrail(SqliteAuditStore(Path(state) / "audit.sqlite"))
        bench_pair("local (SQLite under WEFT_STATE_DIR)", quotas, trail, n)


def bench_azurite(n: int) -> None:
    from azure.data.tables import TableClient
    from azure.storage.blob import ContainerClient

    from tests.support import start_azurite

    azurite = start_azurite()
    try:
        table = TableClient.from_connection_string(azurite.connection_string, "benchquotas")
        container = ContainerClient.from_connection_string(azurite.connection_string, "bench-audit")
        quotas = Quotas(TableQuotaStore(table), UNLIMITED)
        trail = AuditTrail(AppendBlobAuditStore(container))
        bench_pair("Azurite (Table Storage quota, append-blob audit)", quotas, trail, n)
    finally:
        azurite.stop()


def bench_jwt(n: int) -> None:
    try:
        import httpx
        import jwt
        from cryptography.hazmat.primitives.asymmetric import rsa

        from shared.identity.jwks import JwksCache
        from shared.identity.settings import IdentitySettings
        from shared.identity.tokens import BearerValidator
    except ImportError as exc:
        print(f"JWT: skipped ({exc})")
        return
    tenant = "11111111-2222-3333-4444-555555555555"
    issuer = f"https://login.example/{tenant}/v2.0"
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    public_jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    documents = {f"{issuer}/.well-known/openid-configuration": {"issuer": issuer, "jwks_uri": "https://keys.example/k"},
                 "https://keys.example/k": {"keys": [public_jwk]}}

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=documents[str(request.url)])

    try:
        settings = IdentitySettings(tenant_id=tenant, issuer=issuer, audiences=("api://weft",))
        validator = BearerValidator(settings, JwksCache(settings, httpx.Client(transport=httpx.MockTransport(serve))))
        now = int(time.time())
        token = jwt.encode({"iss": issuer, "aud": "api://weft", "tid": tenant, "oid": "caller-1", "sub": "caller-1",
                            "iat": now, "nbf": now, "exp": now + 3600, "roles": ["Runs.Submit"], "idtyp": "app"},
                           private_key, algorithm="RS256", headers={"kid": "k1"})
        validator.validate(token)  # discovery and key fetch, once
        samples = timed(n, lambda _: validator.validate(token))
    except Exception as exc:  # the identity module is another helper's, and may change under this benchmark
        print(f"JWT: skipped ({type(exc).__name__}: {exc})")
        return
    print("JWT (RS256, 2048-bit key, JWKS cached):")
    report("BearerValidator.validate", samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per local case")
    parser.add_argument("--azurite-requests", type=int, default=300, help="requests per Azurite case")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    bench_local(args.requests)
    bench_azurite(args.azurite_requests)
    bench_jwt(args.requests)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
