"""The SSRF guard: which addresses are refused by default, what the settings open, and pinning through redirects."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from shared.errors import InvalidRequest, UpstreamUnavailable
from shared.sources.ssrf import (
    DestinationNotAllowed,
    GuardedTransport,
    NetworkPolicy,
    SsrfGuard,
    address_problem,
)
from tests.unit.sources.conftest import table_resolver

BLOCKED = [
    pytest.param("127.0.0.1", "loopback", id="ipv4-loopback"),
    pytest.param("127.9.9.9", "loopback", id="ipv4-loopback-range"),
    pytest.param("10.1.2.3", "private", id="ipv4-private-10"),
    pytest.param("172.16.5.4", "private", id="ipv4-private-172"),
    pytest.param("192.168.1.1", "private", id="ipv4-private-192"),
    pytest.param("169.254.10.1", "link-local", id="ipv4-link-local"),
    pytest.param("0.0.0.0", "unspecified", id="ipv4-unspecified"),
    pytest.param("224.0.0.1", "multicast", id="ipv4-multicast"),
    pytest.param("240.0.0.1", None, id="ipv4-reserved"),
    pytest.param("255.255.255.255", None, id="ipv4-broadcast"),
    pytest.param("100.64.0.1", "not globally routable", id="ipv4-shared-cgnat"),
    pytest.param("::1", "loopback", id="ipv6-loopback"),
    pytest.param("::", "unspecified", id="ipv6-unspecified"),
    pytest.param("fe80::1", "link-local", id="ipv6-link-local"),
    pytest.param("fc00::1", "private", id="ipv6-unique-local"),
    pytest.param("ff02::1", "multicast", id="ipv6-multicast"),
    pytest.param("fec0::1", "site-local", id="ipv6-site-local"),
    pytest.param("::ffff:127.0.0.1", "loopback (embedded IPv4 127.0.0.1)", id="ipv4-mapped-loopback"),
    pytest.param("::ffff:10.0.0.1", "private (embedded IPv4 10.0.0.1)", id="ipv4-mapped-private"),
    pytest.param("64:ff9b::a00:1", "private (embedded IPv4 10.0.0.1)", id="nat64-private"),
    pytest.param("2002:7f00:1::", "loopback (embedded IPv4 127.0.0.1)", id="6to4-loopback"),
]
PLATFORM = [
    pytest.param("169.254.169.254", id="instance-metadata"),
    pytest.param("168.63.129.16", id="azure-wireserver"),
    pytest.param("::ffff:169.254.169.254", id="instance-metadata-ipv4-mapped"),
    pytest.param("fd00:ec2::254", id="aws-metadata-ipv6"),
]
PUBLIC = [
    pytest.param("93.184.216.34", id="ipv4-public"),
    pytest.param("2606:2800:220:1:248:1893:25c8:1946", id="ipv6-public"),
    pytest.param("::ffff:8.8.8.8", id="ipv4-mapped-public"),
]
PRIVATE_OK = NetworkPolicy(allow_private_network=True)


def url_for(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:8080/path"


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_non_public_addresses_are_refused_by_default_naming_host_and_reason(address: str, reason: str | None) -> None:
    with pytest.raises(DestinationNotAllowed) as caught:
        asyncio.run(SsrfGuard().addresses(url_for(address)))
    message = caught.value.message
    assert str(ipaddress.ip_address(address)) in message
    assert "WEFT_ALLOW_PRIVATE_NETWORK=true" in message
    if reason is not None:
        assert f"{reason} address" in message
    assert isinstance(caught.value, InvalidRequest) and caught.value.code == "destination_not_allowed"


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_non_public_addresses_are_allowed_with_the_private_network_setting(address: str, reason: str | None) -> None:
    assert asyncio.run(SsrfGuard(PRIVATE_OK).addresses(url_for(address))) == [ipaddress.ip_address(address)]


@pytest.mark.parametrize("address", PLATFORM)
def test_platform_endpoints_stay_refused_when_private_networks_are_allowed(address: str) -> None:
    with pytest.raises(DestinationNotAllowed, match="WEFT_ALLOWED_HOSTS") as caught:
        asyncio.run(SsrfGuard(PRIVATE_OK).addresses(url_for(address)))
    assert "endpoint" in caught.value.message
    assert "WEFT_ALLOW_PRIVATE_NETWORK" not in caught.value.message


@pytest.mark.parametrize("address", PLATFORM)
def test_platform_endpoints_open_only_through_the_allow_list(address: str) -> None:
    guard = SsrfGuard(NetworkPolicy(allowed_hosts=frozenset({address})))
    assert asyncio.run(guard.addresses(url_for(address))) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert asyncio.run(SsrfGuard().addresses(url_for(address))) == [ipaddress.ip_address(address)]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("ftp://example.com/x", id="ftp"),
        pytest.param("gopher://example.com:70/_x", id="gopher"),
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("/relative/path", id="no-scheme"),
        pytest.param("http://", id="no-host"),
    ],
)
def test_only_http_and_https_urls_with_a_host_are_accepted(url: str) -> None:
    with pytest.raises(DestinationNotAllowed):
        asyncio.run(SsrfGuard(PRIVATE_OK).addresses(url))


def test_a_hostname_resolving_to_a_private_address_is_refused_with_both_named() -> None:
    guard = SsrfGuard(resolver=table_resolver({"internal.example": ["10.0.0.7"]}))
    with pytest.raises(DestinationNotAllowed, match=r"internal\.example \(10\.0\.0\.7\).*private"):
        asyncio.run(guard.addresses("https://internal.example/openapi.json"))


def test_one_private_record_among_public_ones_refuses_the_host() -> None:
    guard = SsrfGuard(resolver=table_resolver({"mixed.example": ["93.184.216.34", "127.0.0.1"]}))
    with pytest.raises(DestinationNotAllowed, match=r"127\.0\.0\.1"):
        asyncio.run(guard.addresses("http://mixed.example/"))


def test_localhost_by_name_is_refused() -> None:
    guard = SsrfGuard(resolver=table_resolver({"localhost": ["127.0.0.1", "::1"]}))
    with pytest.raises(DestinationNotAllowed, match="loopback"):
        asyncio.run(guard.addresses("http://localhost:7071/api"))


def test_allow_listed_hosts_skip_resolution_entirely() -> None:
    resolver = table_resolver({})
    guard = SsrfGuard(NetworkPolicy(allowed_hosts=frozenset({"api.internal"})), resolver=resolver)
    assert asyncio.run(guard.addresses("http://API.internal./v1")) is None
    assert resolver.lookups == []  # type: ignore[attr-defined]


def test_an_unresolvable_host_is_an_upstream_problem() -> None:
    guard = SsrfGuard(resolver=table_resolver({}))
    with pytest.raises(UpstreamUnavailable, match=r"cannot resolve host 'nowhere\.example'"):
        asyncio.run(guard.addresses("http://nowhere.example/"))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, NetworkPolicy(), id="defaults"),
        pytest.param({"WEFT_ALLOW_PRIVATE_NETWORK": "true"}, PRIVATE_OK, id="private"),
        pytest.param(
            {"WEFT_ALLOWED_HOSTS": " Api.Internal , 10.0.0.5,,[::1]"},
            NetworkPolicy(allowed_hosts=frozenset({"api.internal", "10.0.0.5", "::1"})),
            id="allow-list",
        ),
    ],
)
def test_policy_from_env(env: dict[str, str], expected: NetworkPolicy) -> None:
    assert NetworkPolicy.from_env(env) == expected


def test_policy_from_env_rejects_a_malformed_flag() -> None:
    with pytest.raises(ValueError, match="WEFT_ALLOW_PRIVATE_NETWORK"):
        NetworkPolicy.from_env({"WEFT_ALLOW_PRIVATE_NETWORK": "maybe"})


def test_address_problem_is_none_for_public_and_named_for_private() -> None:
    assert address_problem(ipaddress.ip_address("8.8.8.8")) is None
    assert address_problem(ipaddress.ip_address("10.0.0.1")) == "private"
    assert address_problem(ipaddress.ip_address("10.0.0.1"), allow_private=True) is None


# ------------------------------------------------------------------------------------------- the guarded transport


class Recorder:
    """An inner transport factory whose transports answer from ``routes`` and record what they were sent."""

    def __init__(self, routes: dict[str, httpx.Response]) -> None:
        self.routes = routes
        self.sent: list[httpx.Request] = []
        self.made = 0

    def __call__(self) -> httpx.MockTransport:
        self.made += 1

        def handler(request: httpx.Request) -> httpx.Response:
            self.sent.append(request)
            return self.routes[request.headers["host"] + request.url.path]

        return httpx.MockTransport(handler)


def guarded_client(recorder: Recorder, table: dict[str, list[str]], **policy: object) -> httpx.AsyncClient:
    guard = SsrfGuard(NetworkPolicy(**policy), resolver=table_resolver(table))  # type: ignore[arg-type]
    transport = GuardedTransport(guard, inner_factory=recorder)
    return httpx.AsyncClient(transport=transport, follow_redirects=True, trust_env=False)


def test_requests_go_to_the_checked_address_keeping_host_and_sni() -> None:
    recorder = Recorder({"api.example/v1": httpx.Response(200, json={"ok": True})})

    async def scenario() -> httpx.Response:
        async with guarded_client(recorder, {"api.example": ["93.184.216.34"]}) as client:
            return await client.get("https://api.example/v1")

    response = asyncio.run(scenario())
    assert response.json() == {"ok": True}
    assert str(response.request.url) == "https://api.example/v1"  # what the caller sees is unchanged
    [sent] = recorder.sent
    assert sent.url.host == "93.184.216.34"
    assert sent.headers["host"] == "api.example"
    assert sent.extensions["sni_hostname"] == "api.example"


def test_a_redirect_to_a_private_host_is_refused_at_the_hop() -> None:
    recorder = Recorder({"api.example/start": httpx.Response(302, headers={"Location": "http://intranet.example/"})})
    table = {"api.example": ["93.184.216.34"], "intranet.example": ["192.168.0.10"]}

    async def scenario() -> None:
        async with guarded_client(recorder, table) as client:
            await client.get("http://api.example/start")

    with pytest.raises(DestinationNotAllowed, match=r"intranet\.example \(192\.168\.0\.10\)"):
        asyncio.run(scenario())
    assert [request.headers["host"] for request in recorder.sent] == ["api.example"]


def test_each_hostname_gets_its_own_connection_pool_even_on_one_address() -> None:
    recorder = Recorder({"a.example/": httpx.Response(200), "b.example/": httpx.Response(200)})
    table = {"a.example": ["93.184.216.34"], "b.example": ["93.184.216.34"]}

    async def scenario() -> None:
        async with guarded_client(recorder, table) as client:
            await client.get("https://a.example/")
            await client.get("https://b.example/")
            await client.get("https://a.example/")

    asyncio.run(scenario())
    assert recorder.made == 2
    assert [request.extensions["sni_hostname"] for request in recorder.sent] == ["a.example", "b.example", "a.example"]


def test_allow_listed_hosts_are_sent_unchanged() -> None:
    recorder = Recorder({"svc.internal/": httpx.Response(204)})

    async def scenario() -> None:
        async with guarded_client(recorder, {}, allowed_hosts=frozenset({"svc.internal"})) as client:
            await client.get("http://svc.internal/")

    asyncio.run(scenario())
    [sent] = recorder.sent
    assert sent.url.host == "svc.internal" and "sni_hostname" not in sent.extensions
