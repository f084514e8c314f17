"""A loopback Key Vault (secrets data plane) over TLS, speaking the challenge-authentication handshake.

``SecretClient`` refuses plain HTTP, so the server uses a certificate from :func:`make_loopback_tls` (a throwaway CA
plus a leaf for ``127.0.0.1``); point the client at the CA file with ``connection_verify=<ca file>``.

Protocol, as the real service does it:

1. ``GET /secrets/{name}/{version}?api-version=...`` without ``Authorization`` → 401 with
   ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"``.
2. The client gets a token for ``https://vault.azure.net/.default`` and repeats the request with it → 200
   ``{"value", "id", "attributes"}``, 404 ``SecretNotFound``, or 403 ``Forbidden`` for a name in ``forbidden``.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fakes import LoopbackServer, RecordedRequest, Response

__all__ = ["KEY_VAULT_RESOURCE", "FakeKeyVault", "LoopbackTls", "make_loopback_tls"]

KEY_VAULT_RESOURCE = "https://vault.azure.net"
_SECRET_PATH = re.compile(r"/secrets/(?P<name>[0-9a-zA-Z-]{1,127})(?:/(?P<version>[0-9a-f]{0,32}))?/?")


@dataclass(frozen=True)
class LoopbackTls:
    """Files for a TLS server on 127.0.0.1: the CA to trust, and the server's certificate chain and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for the server side."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_loopback_tls(directory: Path) -> LoopbackTls:
    """Create a throwaway CA and a leaf certificate for ``127.0.0.1``/``localhost`` in ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Weft test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    tls = LoopbackTls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    tls.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.cert_file.write_bytes(
        leaf_cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    tls.key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return tls


class FakeKeyVault(LoopbackServer):
    """Secrets in ``secrets``; ``bearer`` is the token authorized requests must carry (from the identity fake)."""

    def __init__(
        self,
        tls: LoopbackTls,
        *,
        bearer: str,
        secrets: dict[str, str] | None = None,
        tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47",
        forbidden: set[str] | None = None,
    ) -> None:
        super().__init__(ssl_context=tls.server_context())
        self.bearer = bearer
        self.tenant_id = tenant_id
        self.secrets = dict(secrets or {})
        self.forbidden = set(forbidden or ())
        self.reads: Counter[str] = Counter()
        """Authorized reads per secret name (the challenge round trip is not counted)."""
        self._reads_lock = threading.Lock()

    @property
    def vault_url(self) -> str:
        """The value for ``KEY_VAULT_URL``."""
        return self.url

    @property
    def challenges(self) -> int:
        """Requests answered with the 401 authentication challenge."""
        return sum(1 for r in self.requests if "authorization" not in r.headers)

    def handle(self, request: RecordedRequest) -> Response:
        authorization = request.headers.get("authorization")
        if authorization is None:
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
                f'resource="{KEY_VAULT_RESOURCE}"'
            )
            return Response(
                401,
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                {"WWW-Authenticate": challenge},
            )
        if authorization != f"Bearer {self.bearer}":
            return Response(401, {"error": {"code": "Unauthorized", "message": "AKV10022: Invalid audience."}})
        if not request.query.get("api-version"):
            return Response(400, {"error": {"code": "BadParameter", "message": "api-version is required"}})
        match = _SECRET_PATH.fullmatch(request.path)
        if request.method != "GET" or match is None:
            return Response(404, {"error": {"code": "NotFound", "message": "Operation not supported by the fake"}})
        name = match.group("name")
        if name in self.forbidden:
            message = f"The user, group or application does not have secrets get permission on key vault {name}."
            return Response(403, {"error": {"code": "Forbidden", "message": message}})
        if name not in self.secrets:
            message = f"A secret with (name/id) {name} was not found in this key vault."
            return Response(404, {"error": {"code": "SecretNotFound", "message": message}})
        with self._reads_lock:
            self.reads[name] += 1
        return Response(
            200,
            {
                "value": self.secrets[name],
                "id": f"{self.vault_url}/secrets/{name}/0123456789abcdef0123456789abcdef",
                "attributes": {
                    "enabled": True,
                    "created": 1_767_225_600,
                    "updated": 1_767_225_600,
                    "recoveryLevel": "Recoverable+Purgeable",
                    "recoverableDays": 90,
                },
                "tags": {},
            },
        )
