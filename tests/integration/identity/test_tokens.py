"""Bearer tokens against a loopback OIDC issuer that signs real RS256 tokens: what is accepted, and every refusal
with its named reason (401, never 500, never the token in the message)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from shared.errors import Unauthenticated
from shared.identity import LOCAL_CALLER, Authenticator, Role
from tests.fakes.oidc_issuer import AUDIENCE, TENANT_ID, FakeOidcIssuer, SigningKey, client_principal

MakeAuth = Callable[..., Authenticator]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(authenticator: Authenticator, headers: dict[str, str]) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        authenticator.authenticate(headers)
    return caught.value


# -- accepted ----------------------------------------------------------------------------------------------------


def test_a_user_token_gives_the_user_with_its_roles(oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth) -> None:
    auth = make_authenticator()
    oid = str(uuid.uuid4())
    caller = auth.authenticate(bearer(oidc_issuer.user_token(oid=oid, roles=["Runs.Submit", "Runs.Approve"])))
    assert (caller.tenant_id, caller.object_id, caller.kind, caller.name) == (TENANT_ID, oid, "user", "Ada Lovelace")
    assert caller.key == f"{TENANT_ID}/{oid}"
    assert caller.has_role(Role.RUNS_APPROVE) and not caller.has_role(Role.TOOLS_ADMIN)
    assert (oidc_issuer.discovery_requests, oidc_issuer.jwks_requests) == (1, 1)


def test_a_user_without_a_roles_claim_gets_the_default_roles(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    assert make_authenticator().authenticate(bearer(oidc_issuer.user_token())).roles == frozenset()
    auth = make_authenticator(WEFT_AUTH_DEFAULT_ROLES="Runs.Submit")
    assert auth.authenticate(bearer(oidc_issuer.user_token())).roles == {"Runs.Submit"}
    assert auth.authenticate(bearer(oidc_issuer.app_token())).roles == frozenset()  # apps get no defaults


@pytest.mark.parametrize("idtyp", [True, False], ids=["idtyp-claim", "sub-equals-oid"])
def test_an_app_only_token_is_an_app_with_the_roles_of_its_roles_claim(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth, idtyp: bool
) -> None:
    token = oidc_issuer.token(oidc_issuer.app_claims(roles=["Runs.Submit", "Runs.ReadAll"], idtyp=idtyp))
    caller = make_authenticator().authenticate(bearer(token))
    assert caller.kind == "app"
    assert caller.roles == {"Runs.Submit", "Runs.ReadAll"}


def test_a_v1_token_for_the_app_id_uri_is_accepted_unless_v1_is_off(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    token = oidc_issuer.token(iss=f"https://sts.windows.net/{TENANT_ID}/", aud="api://weft", ver="1.0")
    assert make_authenticator().authenticate(bearer(token)).kind == "user"
    assert refused(make_authenticator(WEFT_AUTH_ACCEPT_V1_ISSUER="false"), bearer(token)).message == "wrong issuer"


def test_header_names_and_the_scheme_are_case_insensitive(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    caller = make_authenticator().authenticate({"AUTHORIZATION": f"bearer {oidc_issuer.user_token()}"})
    assert caller.kind == "user"


# -- refused -----------------------------------------------------------------------------------------------------


def _with(name: str, value: Any) -> Callable[[FakeOidcIssuer], str]:
    return lambda issuer: issuer.token(**{name: value})


def _unknown_tenant(issuer: FakeOidcIssuer) -> str:
    return issuer.token(tid=str(uuid.uuid4()))


TOKEN_CASES: list[tuple[str, Callable[[FakeOidcIssuer], str], str]] = [
    ("expired", FakeOidcIssuer.expired_token, "token expired"),
    ("not-yet-valid", FakeOidcIssuer.not_yet_valid_token, "token not yet valid"),
    ("issued-in-the-future", _with("iat", int(time.time()) + 3600), "token not yet valid"),
    ("wrong-audience", FakeOidcIssuer.wrong_audience_token, "wrong audience"),
    ("wrong-issuer", FakeOidcIssuer.wrong_issuer_token, "wrong issuer"),
    ("unknown-key", FakeOidcIssuer.unknown_key_token, "unknown signing key"),
    ("alg-none", FakeOidcIssuer.none_alg_token, "unsupported algorithm none"),
    ("hs256-public-key", FakeOidcIssuer.hs256_public_key_token, "unsupported algorithm HS256"),
    ("malformed", FakeOidcIssuer.malformed_token, "malformed token"),
    ("no-exp", _with("exp", None), "malformed token: missing claim exp"),
    ("no-tid", _with("tid", None), "no tenant (tid) claim"),
    ("other-tenant", _unknown_tenant, "another tenant"),
    ("no-oid-no-sub", lambda i: i.token(oid=None, sub=None), "no object id (oid) claim"),
    ("oid-with-a-slash", _with("oid", "a/b"), "object id (oid) claim is malformed"),
    ("roles-not-a-list", _with("roles", {"Runs.Submit": True}), "roles claim is malformed"),
]


@pytest.mark.parametrize(("make_token", "reason"), [c[1:] for c in TOKEN_CASES], ids=[c[0] for c in TOKEN_CASES])
def test_every_bad_token_is_refused_with_its_reason(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth, make_token: Callable[[FakeOidcIssuer], str],
    reason: str,
) -> None:
    token = make_token(oidc_issuer)
    error = refused(make_authenticator(), bearer(token))
    assert reason in error.message
    assert error.http_status == 401 and error.to_dict()["code"] == "unauthenticated"
    signature = token.split(".")[-1]
    assert token not in str(error.to_dict()) and (not signature or signature not in str(error.to_dict()))


def test_a_token_signed_with_a_tampered_payload_is_refused(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    header, _, signature = oidc_issuer.user_token().split(".")
    forged_payload = oidc_issuer.user_token(roles=["Tools.Admin"]).split(".")[1]
    error = refused(make_authenticator(), bearer(f"{header}.{forged_payload}.{signature}"))
    assert error.message == "invalid signature"


HEADER_CASES = [
    ("missing", {}, "no credentials"),
    ("basic-scheme", {"Authorization": "Basic dXNlcjpwYXNz"}, "unsupported authorization scheme"),
    ("empty-bearer", {"Authorization": "Bearer "}, "malformed token"),
    ("two-tokens", {"Authorization": "Bearer a.b.c d.e.f"}, "malformed token"),
    ("oversize", {"Authorization": "Bearer " + "a" * 9000}, "token too large"),
]


@pytest.mark.parametrize(("headers", "reason"), [c[1:] for c in HEADER_CASES], ids=[c[0] for c in HEADER_CASES])
def test_bad_authorization_headers_are_refused_without_asking_the_issuer(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth, headers: dict[str, str], reason: str
) -> None:
    assert reason in refused(make_authenticator(), headers).message
    assert oidc_issuer.requests == []


def test_the_clock_skew_is_bounded(oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth) -> None:
    now = int(time.time())
    auth = make_authenticator(WEFT_AUTH_CLOCK_SKEW_S="60")
    assert auth.authenticate(bearer(oidc_issuer.token(iat=now - 600, nbf=now - 600, exp=now - 30))).kind == "user"
    assert refused(auth, bearer(oidc_issuer.token(iat=now - 600, nbf=now - 600, exp=now - 90))).message == (
        "token expired"
    )
    assert auth.authenticate(bearer(oidc_issuer.token(nbf=now + 30))).kind == "user"
    assert refused(auth, bearer(oidc_issuer.token(nbf=now + 90))).message == "token not yet valid"


def test_a_key_that_does_not_match_the_algorithm_is_refused(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    auth = make_authenticator(WEFT_AUTH_ALGORITHMS="RS256,ES256")
    header = jwt.utils.base64url_encode(f'{{"alg":"ES256","kid":"{oidc_issuer.current_key.kid}"}}'.encode())
    payload = oidc_issuer.user_token().split(".")[1]
    error = refused(auth, bearer(f"{header.decode()}.{payload}.c2lnbmF0dXJl"))
    assert error.message == "unsupported algorithm ES256 for this signing key"


def test_symmetric_keys_in_the_key_set_are_never_used(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    oidc_issuer.extra_jwks.append({"kty": "oct", "kid": "shared-secret", "k": "c2VjcmV0"})
    oidc_issuer.extra_jwks.append({"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"})
    token = oidc_issuer.token(headers={"kid": "shared-secret"})
    assert refused(make_authenticator(), bearer(token)).message == "unknown signing key"
    assert make_authenticator().authenticate(bearer(oidc_issuer.user_token())).kind == "user"


def test_a_required_scope_applies_to_users_not_to_apps(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    auth = make_authenticator(WEFT_AUTH_REQUIRED_SCOPE="user_impersonation")
    assert auth.authenticate(bearer(oidc_issuer.user_token(scp="openid user_impersonation"))).kind == "user"
    assert "lacks the scope user_impersonation" in refused(auth, bearer(oidc_issuer.user_token(scp="other"))).message
    assert auth.authenticate(bearer(oidc_issuer.app_token(roles=["Runs.Submit"]))).kind == "app"


# -- modes -------------------------------------------------------------------------------------------------------


def test_forged_easy_auth_headers_do_nothing_when_easy_auth_is_off(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    forged = {"X-MS-CLIENT-PRINCIPAL": client_principal({"tid": TENANT_ID, "oid": "attacker",
                                                         "roles": ["Tools.Admin"]}),
              "X-MS-CLIENT-PRINCIPAL-ID": "attacker", "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}
    auth = make_authenticator()
    assert "no credentials" in refused(auth, forged).message
    oid = str(uuid.uuid4())
    caller = auth.authenticate({**forged, **bearer(oidc_issuer.user_token(oid=oid))})
    assert caller.object_id == oid and caller.roles == frozenset()


def test_with_easy_auth_and_bearer_the_principal_wins_and_bearer_is_the_fallback(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    auth = make_authenticator(WEFT_AUTH_MODE="easy_auth,bearer")
    principal = client_principal({"tid": TENANT_ID, "oid": "from-easy-auth", "sub": "pairwise", "scp": "x"})
    assert auth.authenticate({"X-MS-CLIENT-PRINCIPAL": principal}).object_id == "from-easy-auth"
    oid = str(uuid.uuid4())
    assert auth.authenticate(bearer(oidc_issuer.user_token(oid=oid))).object_id == oid


def test_with_identity_off_every_request_is_the_local_caller(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    auth = make_authenticator(WEFT_AUTH_MODE="none")
    assert auth.authenticate({}) is LOCAL_CALLER
    assert auth.authenticate(bearer(oidc_issuer.expired_token())) is LOCAL_CALLER
    assert oidc_issuer.requests == []


def test_protected_resource_metadata_points_at_the_tenant(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    document = make_authenticator().protected_resource_metadata("https://weft.example/runtime/webhooks/mcp")
    assert document == {
        "resource": "https://weft.example/runtime/webhooks/mcp",
        "authorization_servers": [oidc_issuer.issuer],
        "scopes_supported": ["api://weft/.default"],
        "bearer_methods_supported": ["header"],
    }
    only_client_id = make_authenticator(WEFT_AUTH_AUDIENCE=AUDIENCE, WEFT_AUTH_REQUIRED_SCOPE="user_impersonation")
    assert only_client_id.protected_resource_metadata("r")["scopes_supported"] == [
        f"api://{AUDIENCE}/user_impersonation"
    ]


def test_a_rotated_out_key_is_refused_after_the_refetch(
    oidc_issuer: FakeOidcIssuer, make_authenticator: MakeAuth
) -> None:
    auth = make_authenticator()
    old: SigningKey = oidc_issuer.current_key
    auth.authenticate(bearer(oidc_issuer.user_token()))
    oidc_issuer.rotate()
    auth.authenticate(bearer(oidc_issuer.user_token()))
    assert refused(auth, bearer(oidc_issuer.token(key=old))).message == "unknown signing key"
