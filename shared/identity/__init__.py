"""Callers and trust: who is calling (Microsoft Entra ID bearer tokens, App Service Authentication principals) and
which app roles they hold.

- :mod:`shared.identity.caller` — :class:`Caller`, :class:`Role`, :data:`LOCAL_CALLER`.
- :mod:`shared.identity.settings` — :class:`IdentitySettings` (``WEFT_AUTH_*``).
- :mod:`shared.identity.authenticate` — :class:`Authenticator`: request headers → caller.
- :mod:`shared.identity.tokens`, :mod:`shared.identity.jwks` — bearer-token validation and the issuer's keys.
- :mod:`shared.identity.easy_auth` — ``X-MS-CLIENT-PRINCIPAL`` decoding.
"""

from __future__ import annotations

from shared.identity.authenticate import Authenticator
from shared.identity.caller import LOCAL_CALLER, Caller, CallerKind, Role, caller_from_claims, service_caller
from shared.identity.easy_auth import PRINCIPAL_HEADERS, caller_from_principal
from shared.identity.settings import IdentitySettings
from shared.identity.tokens import BearerValidator

__all__ = [
    "LOCAL_CALLER",
    "PRINCIPAL_HEADERS",
    "Authenticator",
    "BearerValidator",
    "Caller",
    "CallerKind",
    "IdentitySettings",
    "Role",
    "caller_from_claims",
    "caller_from_principal",
    "service_caller",
]
