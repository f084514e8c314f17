"""The issuer's signing keys: rotation, the refetch rate limit, single-flight fetches, an issuer that is down or hangs
(503 fast, never a 500 or a hang), stale keys, and an event loop that keeps running while keys are fetched."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from shared.errors import Unauthenticated, UpstreamUnavailable
from shared.identity import Authenticator
from tests.fakes.oidc_issuer import FakeOidcIssuer
from tests.integration.identity.conftest import ManualClock

MakeAuth = Callable[..., Authenticator]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_key_rotation_refetches_the_keys_once(oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth) -> None:
    auth = make_authenticator()
    auth.authenticate(bearer(oidc_issuer.user_token()))
    oidc_issuer.rotate()
    for _ in range(5):
        assert auth.authenticate(bearer(oidc_issuer.user_token())).kind == "user"
    assert (oidc_issuer.discovery_requests, oidc_issuer.jwks_requests) == (1, 2)


def test_unknown_key_ids_refetch_at_most_once_per_interval(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth, clock: ManualClock
) -> None:
    auth = make_authenticator(WEFT_AUTH_JWKS_REFRESH_MIN_S="60")
    auth.authenticate(bearer(oidc_issuer.user_token()))
    assert oidc_issuer.jwks_requests == 1
    for _ in range(50):  # a flood of made-up key ids within the interval: no request reaches the issuer
        with pytest.raises(Unauthenticated, match="unknown signing key"):
            auth.authenticate(bearer(oidc_issuer.unknown_key_token()))
    assert oidc_issuer.jwks_requests == 1
    clock.advance(61)
    for _ in range(50):  # after the interval: one refetch for the whole flood
        with pytest.raises(Unauthenticated, match="unknown signing key"):
            auth.authenticate(bearer(oidc_issuer.unknown_key_token()))
    assert oidc_issuer.jwks_requests == 2
    assert auth.key_fetches == 2


def test_a_rotation_inside_the_interval_is_seen_once_it_passes(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth, clock: ManualClock
) -> None:
    auth = make_authenticator(WEFT_AUTH_JWKS_REFRESH_MIN_S="60")
    auth.authenticate(bearer(oidc_issuer.user_token()))
    oidc_issuer.rotate()
    token = oidc_issuer.user_token()
    with pytest.raises(Unauthenticated, match="unknown signing key"):
        auth.authenticate(bearer(token))
    clock.advance(60)
    assert auth.authenticate(bearer(token)).kind == "user"


def test_concurrent_cold_requests_share_one_fetch(oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth) -> None:
    auth = make_authenticator()
    tokens = [oidc_issuer.user_token() for _ in range(16)]
    results: list[str] = []
    lock = threading.Lock()

    def call(token: str) -> None:
        kind = auth.authenticate(bearer(token)).kind
        with lock:
            results.append(kind)

    oidc_issuer.stall()  # hold the first fetch so that every thread piles up behind it
    threads = [threading.Thread(target=call, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while oidc_issuer.discovery_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    oidc_issuer.release()
    for thread in threads:
        thread.join(timeout=10)
    assert results == ["user"] * 16
    assert (oidc_issuer.discovery_requests, oidc_issuer.jwks_requests) == (1, 1)


def test_an_issuer_that_is_down_gives_503_then_fails_fast_then_recovers(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth, clock: ManualClock
) -> None:
    auth = make_authenticator(WEFT_AUTH_JWKS_RETRY_S="2")
    oidc_issuer.down = True
    with pytest.raises(UpstreamUnavailable) as caught:
        auth.authenticate(bearer(oidc_issuer.user_token()))
    assert caught.value.http_status == 503
    asked = len(oidc_issuer.requests)
    for _ in range(20):  # within the retry interval nothing more reaches the issuer
        with pytest.raises(UpstreamUnavailable):
            auth.authenticate(bearer(oidc_issuer.user_token()))
    assert len(oidc_issuer.requests) == asked
    oidc_issuer.down = False
    clock.advance(2)
    assert auth.authenticate(bearer(oidc_issuer.user_token())).kind == "user"


def test_an_issuer_that_hangs_is_cut_off_by_the_timeout(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    auth = make_authenticator(WEFT_AUTH_HTTP_TIMEOUT_S="0.3")
    oidc_issuer.stall()
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        auth.authenticate(bearer(oidc_issuer.user_token()))
    assert time.monotonic() - started < 3


def test_stale_keys_keep_working_while_the_issuer_is_unreachable(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth, clock: ManualClock
) -> None:
    auth = make_authenticator(WEFT_AUTH_JWKS_MAX_AGE_S="3600")
    auth.authenticate(bearer(oidc_issuer.user_token()))
    clock.advance(3601)
    oidc_issuer.down = True
    assert auth.authenticate(bearer(oidc_issuer.user_token())).kind == "user"
    assert auth.key_fetches == 2  # it did try to refresh


def test_old_keys_are_refetched_after_their_maximum_age(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth, clock: ManualClock
) -> None:
    auth = make_authenticator(WEFT_AUTH_JWKS_MAX_AGE_S="3600", WEFT_AUTH_JWKS_REFRESH_MIN_S="60")
    old = oidc_issuer.current_key
    auth.authenticate(bearer(oidc_issuer.user_token()))
    oidc_issuer.rotate()  # the old key is withdrawn upstream
    assert auth.authenticate(bearer(oidc_issuer.token(key=old))).kind == "user"  # still cached
    clock.advance(3601)
    with pytest.raises(Unauthenticated, match="unknown signing key"):
        auth.authenticate(bearer(oidc_issuer.token(key=old)))


def test_async_validation_never_blocks_the_event_loop(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    auth = make_authenticator()

    async def scenario() -> tuple[str, int, str]:
        oidc_issuer.stall()
        pending = asyncio.create_task(auth.authenticate_async(bearer(oidc_issuer.user_token())))
        ticks = 0
        while not pending.done() and ticks < 1000:  # the loop runs while the key fetch hangs
            await asyncio.sleep(0.002)
            ticks += 1
            if ticks == 20:
                oidc_issuer.release()
        first = (await pending).kind
        warm = (await auth.authenticate_async(bearer(oidc_issuer.user_token()))).kind  # inline now: keys cached
        return first, ticks, warm

    first, ticks, warm = asyncio.run(scenario())
    assert (first, warm) == ("user", "user")
    assert ticks >= 20
    assert oidc_issuer.jwks_requests == 1


def test_async_refusals_are_the_same_401s(oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth) -> None:
    auth = make_authenticator()
    with pytest.raises(Unauthenticated, match="token expired"):
        asyncio.run(auth.authenticate_async(bearer(oidc_issuer.expired_token())))
    with pytest.raises(Unauthenticated, match="unsupported algorithm none"):
        asyncio.run(auth.authenticate_async(bearer(oidc_issuer.none_alg_token())))
