"""Callers: owner keys, roles, 403s naming the role, and how claims become a caller (kind, default roles, tenant)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import Forbidden, Unauthenticated
from shared.identity import LOCAL_CALLER, Caller, Role, caller_from_claims, service_caller

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "5b5450db-eb26-4c1a-981c-ba1d25f0483d"


def user_claims(**overrides: Any) -> dict[str, Any]:
    claims = {"tid": TENANT, "oid": OID, "sub": "pairwise-sub", "scp": "user_impersonation", "name": "Ada"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_roles_are_the_app_registration_values() -> None:
    assert [r.value for r in Role] == ["Runs.Submit", "Runs.ReadAll", "Runs.Approve", "Tools.Admin"]


def test_the_key_is_tenant_slash_object_id() -> None:
    caller = caller_from_claims(user_claims())
    assert caller.key == f"{TENANT}/{OID}"


def test_require_raises_forbidden_naming_the_missing_role() -> None:
    caller = Caller(tenant_id=TENANT, object_id=OID, name="Ada", roles=frozenset({"Runs.Submit"}), kind="user")
    caller.require(Role.RUNS_SUBMIT)
    with pytest.raises(Forbidden) as caught:
        caller.require(Role.RUNS_APPROVE)
    assert "Runs.Approve" in caught.value.message
    assert caught.value.http_status == 403


def test_the_local_caller_holds_every_role() -> None:
    assert LOCAL_CALLER.kind == "local"
    assert all(LOCAL_CALLER.has_role(role) for role in Role)
    assert LOCAL_CALLER.key == "local/local"


def test_a_service_caller_has_its_own_tenant_and_roles() -> None:
    caller = service_caller("queue", ["Runs.Submit"])
    assert (caller.key, caller.kind, caller.roles) == ("service/queue", "service", {"Runs.Submit"})
    with pytest.raises(ValueError, match="service caller name"):
        service_caller("a/b", [])


KIND_CASES = [
    ("delegated-token", user_claims(), "user"),
    ("idtyp-app", user_claims(idtyp="app"), "app"),
    ("idtyp-user-without-scp", user_claims(idtyp="user", scp=None, sub=OID), "user"),
    ("no-scp-and-sub-is-oid", user_claims(scp=None, sub=OID), "app"),
    ("no-scp-but-pairwise-sub", user_claims(scp=None), "user"),  # a signed-in user's ID token (Easy Auth)
]


@pytest.mark.parametrize(("claims", "kind"), [c[1:] for c in KIND_CASES], ids=[c[0] for c in KIND_CASES])
def test_the_kind_follows_idtyp_then_scopes_and_subject(claims: dict[str, Any], kind: str) -> None:
    assert caller_from_claims(claims).kind == kind


def test_default_roles_go_to_users_without_a_roles_claim_only() -> None:
    defaults = frozenset({"Runs.Submit"})
    assert caller_from_claims(user_claims(), default_roles=defaults).roles == defaults
    assert caller_from_claims(user_claims(roles=["Runs.ReadAll"]), default_roles=defaults).roles == {"Runs.ReadAll"}
    assert caller_from_claims(user_claims(roles=[]), default_roles=defaults).roles == frozenset()
    assert caller_from_claims(user_claims(idtyp="app"), default_roles=defaults).roles == frozenset()


def test_names_are_for_display_and_fall_back_to_the_object_id() -> None:
    assert caller_from_claims(user_claims(name=None, preferred_username="ada@example.com")).name == "ada@example.com"
    assert caller_from_claims(user_claims(name=None)).name == OID
    assert caller_from_claims(user_claims(idtyp="app", app_displayname="billing-bot")).name == "billing-bot"


def test_sub_stands_in_for_a_missing_oid() -> None:
    assert caller_from_claims(user_claims(oid=None, sub="abc_DEF-123")).object_id == "abc_DEF-123"


REFUSED = [
    ("no-tid", user_claims(tid=None), "no tenant (tid) claim"),
    ("other-tenant", user_claims(tid="00000000-0000-0000-0000-000000000000"), "another tenant"),
    ("no-oid-or-sub", user_claims(oid=None, sub=None), "no object id (oid) claim"),
    ("oid-with-slash", user_claims(oid="../other"), "object id (oid) claim is malformed"),
    ("oid-with-trailing-newline", user_claims(oid="abc\n"), "object id (oid) claim is malformed"),  # $ let it in
    ("tid-not-a-string", user_claims(tid=42), "no tenant (tid) claim"),
    ("roles-of-numbers", user_claims(roles=[1, 2]), "roles claim is malformed"),
]


@pytest.mark.parametrize(("claims", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_claims_that_identify_no_one_are_refused(claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        caller_from_claims(claims, tenant_id=TENANT)
    assert reason in caught.value.message


def test_the_tenant_is_compared_without_case() -> None:
    assert caller_from_claims(user_claims(tid=TENANT.upper()), tenant_id=TENANT).tenant_id == TENANT


def test_a_run_id_or_service_name_with_a_trailing_newline_names_nothing() -> None:
    """The id patterns are matched whole: ``$`` also matches before a final newline."""
    from shared.errors import NotFound
    from shared.identity.caller import service_caller
    from shared.runs.admission import check_run_id

    with pytest.raises(NotFound):
        check_run_id("run-1\n")
    with pytest.raises(ValueError, match="service caller name"):
        service_caller("queue\n", ())
