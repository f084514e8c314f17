"""App Service Authentication principals: decoding ``X-MS-CLIENT-PRINCIPAL``, claim-type mapping, roles, and that the
headers are trusted only when ``WEFT_AUTH_MODE`` lists ``easy_auth`` (no network needed: bearer stays unused)."""

from __future__ import annotations

import base64
import json

import pytest

from shared.errors import Unauthenticated
from shared.identity import LOCAL_CALLER, Authenticator, IdentitySettings, caller_from_principal
from tests.fakes.oidc_issuer import TENANT_ID, client_principal

OID = "5b5450db-eb26-4c1a-981c-ba1d25f0483d"
OID_URI = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TID_URI = "http://schemas.microsoft.com/identity/claims/tenantid"
SUB_URI = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
ROLE_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
EMAIL_URI = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"


def easy_auth(**env: str) -> Authenticator:
    return Authenticator(IdentitySettings.from_env({"WEFT_AUTH_MODE": "easy_auth", **env}))


def headers(principal: str) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL": principal, "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}


def test_a_user_principal_with_mapped_claim_types_and_repeated_roles() -> None:
    principal = client_principal(
        [{"typ": OID_URI, "val": OID}, {"typ": TID_URI, "val": TENANT_ID}, {"typ": SUB_URI, "val": "pairwise"},
         {"typ": EMAIL_URI, "val": "ada@example.com"}, {"typ": "roles", "val": "Runs.Submit"},
         {"typ": "roles", "val": "Runs.Approve"}, {"typ": "groups", "val": "f08bbbea"}],
        name_typ=EMAIL_URI,
    )
    caller = easy_auth().authenticate(headers(principal))
    assert (caller.tenant_id, caller.object_id, caller.kind, caller.name) == (TENANT_ID, OID, "user", "ada@example.com")
    assert caller.roles == {"Runs.Submit", "Runs.Approve"}


def test_the_role_claim_type_comes_from_role_typ() -> None:
    principal = client_principal({OID_URI: OID, TID_URI: TENANT_ID, "sub": "x", ROLE_URI: ["Tools.Admin"]},
                                 role_typ=ROLE_URI)
    assert easy_auth().authenticate(headers(principal)).roles == {"Tools.Admin"}


def test_an_app_principal_is_an_app() -> None:
    principal = client_principal({"oid": OID, "tid": TENANT_ID, SUB_URI: OID, "azp": "client-app",
                                  "roles": ["Runs.Submit"]})
    caller = easy_auth(WEFT_AUTH_DEFAULT_ROLES="Runs.ReadAll").authenticate(headers(principal))
    assert (caller.kind, caller.roles, caller.name) == ("app", {"Runs.Submit"}, "client-app")


def test_default_roles_and_the_name_header_fill_in() -> None:
    principal = client_principal({"oid": OID, "tid": TENANT_ID, "sub": "pairwise"})
    caller = easy_auth(WEFT_AUTH_DEFAULT_ROLES="Runs.Submit").authenticate(
        {**headers(principal), "x-ms-client-principal-name": "ada@example.com"}
    )
    assert (caller.roles, caller.name) == ({"Runs.Submit"}, "ada@example.com")


def test_unpadded_base64_is_accepted() -> None:
    principal = client_principal({"oid": OID, "tid": TENANT_ID, "sub": "s"}).rstrip("=")
    assert easy_auth().authenticate(headers(principal)).object_id == OID


def _b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


REFUSED = [
    ("not-base64", "%%%not-base64%%%", "malformed client principal"),
    ("not-json", base64.b64encode(b"{oops").decode(), "malformed client principal"),
    ("not-an-object", _b64(["claims"]), "no claims list"),
    ("no-claims", _b64({"auth_typ": "aad"}), "no claims list"),
    ("another-provider", client_principal({"oid": OID, "tid": TENANT_ID}, auth_typ="google"),
     "unsupported identity provider"),
    ("no-tenant", client_principal({"oid": OID}), "no tenant (tid) claim"),
    ("other-tenant", client_principal({"oid": OID, "tid": "00000000-0000-0000-0000-000000000000"}),
     "another tenant"),
    ("too-large", "A" * 40_000, "client principal too large"),
]


@pytest.mark.parametrize(("principal", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_principals_are_refused(principal: str, reason: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        easy_auth(WEFT_AUTH_TENANT_ID=TENANT_ID).authenticate(headers(principal))
    assert reason in caught.value.message
    assert caught.value.http_status == 401


def test_no_principal_in_easy_auth_mode_is_a_401() -> None:
    with pytest.raises(Unauthenticated, match="App Service Authentication sent no client principal"):
        easy_auth().authenticate({"Authorization": "Bearer whatever"})


FORGED = headers(client_principal({"oid": "attacker", "tid": TENANT_ID, "roles": ["Tools.Admin", "Runs.ReadAll"]}))


def test_forged_principal_headers_are_ignored_when_identity_is_off() -> None:
    assert Authenticator(IdentitySettings()).authenticate(FORGED) is LOCAL_CALLER


def test_forged_principal_headers_are_ignored_in_bearer_mode() -> None:
    settings = IdentitySettings.from_env({"WEFT_AUTH_MODE": "bearer", "WEFT_AUTH_TENANT_ID": TENANT_ID,
                                          "WEFT_AUTH_AUDIENCE": "api://weft"})
    authenticator = Authenticator(settings)
    try:
        with pytest.raises(Unauthenticated, match="send Authorization: Bearer"):
            authenticator.authenticate(FORGED)
        assert authenticator.key_fetches == 0
    finally:
        authenticator.close()


def test_caller_from_principal_returns_none_without_the_header() -> None:
    assert caller_from_principal({}) is None


def test_async_easy_auth_needs_no_thread() -> None:
    import asyncio

    principal = client_principal({"oid": OID, "tid": TENANT_ID, "sub": "s"})
    assert asyncio.run(easy_auth().authenticate_async(headers(principal))).object_id == OID


def test_protected_resource_metadata_needs_an_issuer() -> None:
    from shared.errors import NotConfigured

    with pytest.raises(NotConfigured):
        Authenticator(IdentitySettings()).protected_resource_metadata("https://weft.example/mcp")
