"""The SSRF guard: every outbound request of a catalog source goes to a public address, unless a setting says not.

Tool sources are configured by operators but their documents are not: an OpenAPI document names its own server, an
MCP endpoint can redirect, a hostname can resolve to anything. So before each request (document fetch, operation
call, MCP message, each redirect hop) the host is resolved and every address is checked against the policy below;
the request is then sent to the checked address itself (the URL keeps its hostname for the ``Host`` header and TLS
SNI), so a second DNS answer cannot swap in another address between the check and the connection.

Refused unless allowed: non-http(s) schemes; unspecified, loopback, link-local (the cloud metadata endpoint
169.254.169.254 is link-local), multicast, private, reserved and otherwise not globally routable addresses, IPv4 and
IPv6, including IPv4 embedded in IPv6 (``::ffff:10.0.0.1``, 6to4, Teredo, NAT64). ``WEFT_ALLOW_PRIVATE_NETWORK=true``
allows all of those except the :data:`PLATFORM_ENDPOINTS` (instance metadata, the Azure WireServer);
``WEFT_ALLOWED_HOSTS=host1,host2`` allows named hosts (or IP literals) whatever they resolve to, platform endpoints
included.

HTTP clients built here do not read proxy settings from the environment (``trust_env=False``): a proxy would make
the checked address meaningless.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.errors import InvalidRequest, UpstreamUnavailable
from shared.settings import env_bool, env_str

__all__ = [
    "PLATFORM_ENDPOINTS",
    "DestinationNotAllowed",
    "GuardedTransport",
    "IPAddress",
    "NetworkPolicy",
    "Resolver",
    "SsrfGuard",
    "address_problem",
]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses as text``; the default asks the system resolver (``getaddrinfo``)."""

ALLOWED_SCHEMES = frozenset({"http", "https"})
PLATFORM_ENDPOINTS: Mapping[str, str] = {
    "169.254.169.254": "the cloud instance metadata endpoint",
    "168.63.129.16": "the Azure platform endpoint (WireServer)",
    "fd00:ec2::254": "the AWS instance metadata endpoint (IPv6)",
    "100.100.100.200": "the Alibaba Cloud metadata endpoint",
}
"""Addresses refused even when private networks are allowed; only ``WEFT_ALLOWED_HOSTS`` can open them."""

# (reason, test) in the order they are reported; the first that matches names the problem.
_CHECKS: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("unspecified", lambda ip: ip.is_unspecified),
    ("loopback", lambda ip: ip.is_loopback),
    ("link-local", lambda ip: ip.is_link_local),
    ("multicast", lambda ip: ip.is_multicast),
    ("private", lambda ip: ip.is_private),
    ("reserved", lambda ip: ip.is_reserved),
    ("site-local", lambda ip: getattr(ip, "is_site_local", False)),
    ("not globally routable", lambda ip: not ip.is_global),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DestinationNotAllowed(InvalidRequest):
    """An outbound request to an address the network policy refuses (SSRF guard)."""

    code = "destination_not_allowed"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo client), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_problem(ip: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why ``ip`` may not be contacted (``"loopback"``, ``"private"``, ...), or ``None`` when it may.

    ``allow_private`` allows every non-public address except the :data:`PLATFORM_ENDPOINTS`.
    """
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        candidates = [inner]  # the packets end up at the embedded IPv4 address: it decides
    for candidate in candidates:
        platform = PLATFORM_ENDPOINTS.get(str(candidate))
        if platform is not None:
            return platform
    if allow_private:
        return None
    for candidate in candidates:
        for reason, test in _CHECKS:
            if test(candidate):
                suffix = f" (embedded IPv4 {candidate})" if candidate is not ip else ""
                return f"{reason}{suffix}"
    return None


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class NetworkPolicy:
    """Where outbound requests may go. Build with :meth:`from_env`."""

    allow_private_network: bool = False
    """Allow private, loopback, link-local, ... addresses, but not platform endpoints (WEFT_ALLOW_PRIVATE_NETWORK)."""
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    """Hosts allowed whatever they resolve to, e.g. ``{"api.internal", "10.0.0.5"}`` (WEFT_ALLOWED_HOSTS)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NetworkPolicy:
        """Read ``WEFT_ALLOW_PRIVATE_NETWORK`` and ``WEFT_ALLOWED_HOSTS`` (comma-separated)."""
        hosts = env_str(env, "WEFT_ALLOWED_HOSTS", "")
        return cls(
            allow_private_network=env_bool(env, "WEFT_ALLOW_PRIVATE_NETWORK", False),
            allowed_hosts=frozenset(_normalise_host(h) for h in hosts.split(",") if h.strip()),
        )

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` is on the allow-list (so its addresses are not checked)."""
        return _normalise_host(host) in self.allowed_hosts


async def _system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(_normalise_host(host).partition("%")[0])
    except ValueError:
        return None


class SsrfGuard:
    """Checks URLs against a :class:`NetworkPolicy` and resolves them to the addresses that may be contacted.

    ``resolver`` is injectable for tests (a function mapping host names to addresses).
    """

    def __init__(self, policy: NetworkPolicy | None = None, *, resolver: Resolver | None = None) -> None:
        self.policy = policy or NetworkPolicy()
        self._resolve = resolver or _system_resolver

    def check_scheme(self, url: str | httpx.URL) -> httpx.URL:
        """Parse ``url`` and refuse anything but absolute http(s) URLs."""
        try:
            parsed = httpx.URL(str(url))
        except httpx.InvalidURL as exc:
            raise DestinationNotAllowed(f"not a valid URL: {exc}") from None
        if parsed.scheme not in ALLOWED_SCHEMES:
            shown = parsed.scheme or "(none)"
            raise DestinationNotAllowed(f"URL scheme {shown!r} is not allowed; use http or https")
        if not parsed.host:
            raise DestinationNotAllowed("URL has no host")
        return parsed

    async def addresses(self, url: str | httpx.URL) -> list[IPAddress] | None:
        """The checked addresses to connect to for ``url``, or ``None`` when the policy skips the check for this host
        (allow-listed). Raises :class:`DestinationNotAllowed` naming the host and the refused address."""
        parsed = self.check_scheme(url)
        host = parsed.host
        if self.policy.host_allowed(host):
            return None
        literal = _ip_literal(host)
        if literal is not None:
            resolved: list[IPAddress] = [literal]
        else:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            try:
                texts = await self._resolve(host, port)
            except (OSError, UnicodeError) as exc:
                raise UpstreamUnavailable(f"cannot resolve host {host!r}: {exc}") from None
            resolved = [ip for ip in (_ip_literal(text) for text in texts) if ip is not None]
            if not resolved:
                raise UpstreamUnavailable(f"host {host!r} resolved to no address")
        for ip in resolved:  # one refused address refuses the host: the client could pick any of them
            problem = address_problem(ip, allow_private=self.policy.allow_private_network)
            if problem is not None:
                raise DestinationNotAllowed(self._refusal(host, ip, problem))
        return resolved

    def _refusal(self, host: str, ip: IPAddress, problem: str) -> str:
        shown = host if _ip_literal(host) is not None else f"{host} ({ip})"
        remedy = (
            "add the host to WEFT_ALLOWED_HOSTS"
            if problem in PLATFORM_ENDPOINTS.values()
            else "set WEFT_ALLOW_PRIVATE_NETWORK=true or add the host to WEFT_ALLOWED_HOSTS"
        ) + " to allow it"
        return f"outbound request to {shown} refused: {ip} is {_article(problem)}{problem} address; {remedy}"


def _article(problem: str) -> str:
    if problem.startswith("the "):
        return ""
    return "an " if problem[0] in "aeiou" else "a "


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks every request (so every redirect hop) with an :class:`SsrfGuard` and sends it to
    the checked address, keeping the hostname for ``Host`` and TLS SNI.

    One inner connection pool per hostname, so two names served from one address never share a TLS connection.
    ``inner_factory`` and ``request_type`` make it usable with an httpx-compatible package (the MCP SDK's ``httpx2``).
    """

    def __init__(
        self,
        guard: SsrfGuard,
        *,
        inner_factory: Callable[[], Any] = httpx.AsyncHTTPTransport,
        request_type: type[Any] = httpx.Request,
    ) -> None:
        self.guard = guard
        self._inner_factory = inner_factory
        self._request_type = request_type
        self._inner: dict[str, Any] = {}

    def _transport(self, host: str) -> Any:
        inner = self._inner.get(host)
        if inner is None:
            inner = self._inner[host] = self._inner_factory()
        return inner

    async def handle_async_request(self, request: Any) -> Any:
        """Check ``request.url``; forward it to the first checked address (or as it is, for allow-listed hosts)."""
        url = request.url
        addresses = await self.guard.addresses(str(url))
        host = url.host
        if not addresses or _ip_literal(host) is not None:
            return await self._transport(host).handle_async_request(request)
        pinned = self._request_type(
            request.method,
            url.copy_with(host=str(addresses[0])),
            headers=request.headers,  # carries Host: <name> from the original URL
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": host},
        )
        return await self._transport(host).handle_async_request(pinned)

    async def aclose(self) -> None:
        """Close every inner connection pool."""
        inner, self._inner = list(self._inner.values()), {}
        for transport in inner:
            await transport.aclose()

