"""The loopback OIDC issuer for identity tests, and authenticators pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shared.identity import Authenticator, IdentitySettings
from tests.fakes.oidc_issuer import FakeOidcIssuer


class ManualClock:
    """A monotonic clock the test moves by hand (the key cache's rate limits read it)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def oidc_issuer() -> Iterator[FakeOidcIssuer]:
    """A fresh issuer per test (tests rotate its keys, take it down, count its requests)."""
    with FakeOidcIssuer() as issuer:
        yield issuer
        assert issuer.errors == []


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_authenticator(oidc_issuer: FakeOidcIssuer, clock: ManualClock) -> Iterator[Callable[..., Authenticator]]:
    """``make_authenticator(WEFT_AUTH_X="...")``: an authenticator for ``oidc_issuer``'s environment plus overrides;
    closed after the test."""
    built: list[Authenticator] = []

    def make(**overrides: str) -> Authenticator:
        settings = IdentitySettings.from_env({**oidc_issuer.environment, **overrides})
        authenticator = Authenticator(settings, clock=clock)
        built.append(authenticator)
        return authenticator

    yield make
    for authenticator in built:
        authenticator.close()
