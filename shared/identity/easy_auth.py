"""App Service Authentication ("Easy Auth") principals: the platform validates the caller's token and passes its
claims in ``X-MS-CLIENT-PRINCIPAL`` (base64 of JSON ``{auth_typ, claims: [{typ, val}], name_typ, role_typ}``).

The platform strips these headers from incoming requests, so they can be trusted **only** when the app really is
behind Easy Auth; :class:`~shared.identity.authenticate.Authenticator` reads them only when ``WEFT_AUTH_MODE`` lists
``easy_auth``. Claim types arrive partly mapped to WS-* URIs (``.../objectidentifier``, ``.../tenantid``); they are
mapped back to the token's short names so that :func:`~shared.identity.caller.caller_from_claims` judges both paths
alike.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from shared.errors import Unauthenticated
from shared.identity.caller import Caller, caller_from_claims

__all__ = ["PRINCIPAL_HEADER", "PRINCIPAL_HEADERS", "caller_from_principal", "decode_principal"]

PRINCIPAL_HEADER = "x-ms-client-principal"
PRINCIPAL_HEADERS = frozenset({
    PRINCIPAL_HEADER, "x-ms-client-principal-id", "x-ms-client-principal-name", "x-ms-client-principal-idp",
})
"""The principal headers App Service Authentication sets (lowercase)."""

_ROLE_TYPES = frozenset({"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
_SHORT_NAMES = {
    "http://schemas.microsoft.com/identity/claims/objectidentifier": "oid",
    "http://schemas.microsoft.com/identity/claims/tenantid": "tid",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": "sub",
    "http://schemas.microsoft.com/identity/claims/scope": "scp",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": "name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "upn",
}
_FIELD = "X-MS-CLIENT-PRINCIPAL"


def decode_principal(value: str, *, max_bytes: int) -> dict[str, Any]:
    """The JSON object in an ``X-MS-CLIENT-PRINCIPAL`` value. Raises :class:`~shared.errors.Unauthenticated`
    ("malformed client principal") on anything else, or when it is longer than ``max_bytes``."""
    if len(value) > max_bytes:
        raise Unauthenticated(f"client principal too large (over {max_bytes} bytes)", field=_FIELD)
    raw = value.strip()
    try:
        data = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        document = json.loads(data)
    except (binascii.Error, ValueError) as exc:
        raise Unauthenticated("malformed client principal", field=_FIELD) from exc
    if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
        raise Unauthenticated("malformed client principal: no claims list", field=_FIELD)
    return document


def _claims(document: Mapping[str, Any]) -> dict[str, Any]:
    role_types = _ROLE_TYPES | {document.get("role_typ") or "roles"}
    name_type = document.get("name_typ")
    claims: dict[str, Any] = {}
    roles: list[str] = []
    for entry in document["claims"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("typ"), str):
            continue
        typ: str = entry["typ"]
        val = entry.get("val")
        if not isinstance(val, str):
            continue
        if typ in role_types:
            roles.append(val)
            continue
        if typ == name_type:
            claims.setdefault("name", val)
        claims.setdefault(_SHORT_NAMES.get(typ, typ), val)
    if roles:
        claims["roles"] = roles
    return claims


def caller_from_principal(
    headers: Mapping[str, str], *, tenant_id: str = "", default_roles: frozenset[str] = frozenset(),
    max_bytes: int = 32_768,
) -> Caller | None:
    """The caller App Service Authentication vouches for, from lowercase-keyed ``headers``; ``None`` when the
    request carries no principal (Easy Auth let an anonymous request through). Only Microsoft Entra principals
    (``auth_typ`` ``aad``) are accepted."""
    value = headers.get(PRINCIPAL_HEADER)
    if value is None:
        return None
    document = decode_principal(value, max_bytes=max_bytes)
    if str(document.get("auth_typ", "")).lower() != "aad":
        raise Unauthenticated("unsupported identity provider (only Microsoft Entra ID principals)", field=_FIELD)
    claims = _claims(document)
    if "name" not in claims and headers.get("x-ms-client-principal-name"):
        claims["name"] = headers["x-ms-client-principal-name"]
    return caller_from_claims(claims, tenant_id=tenant_id, default_roles=default_roles)
