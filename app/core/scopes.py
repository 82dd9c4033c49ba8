"""The scope catalogue: every named scope, who holds it and what it allows, in one list.

User tokens carry the `USER` scopes (acting on the user itself), admins' tokens add the
`ADMIN` ones (acting on any user of the tenant); `KEY` scopes are only ever given to API
keys. API keys may hold any catalogued scope or `*`. Adding a scope is one line below.
Policy scopes (`read:table:orders`, from a user's policies) and a user's `custom_scopes`
are not catalogued: they name the tenant's own resources.

Registered applications ask for scopes (OAuth 2 `scope`): the OIDC ones, and the user
and admin scopes of the catalogue that the application's `allowed_scopes` lists.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from dataclasses import dataclass

USER, ADMIN, KEY = "user", "admin", "key"
ALL = "*"


@dataclass(frozen=True)
class Scope:
    name: str
    holders: str  # USER: every user token; ADMIN: admin users' tokens; KEY: API keys only
    allows: str


CATALOGUE: tuple[Scope, ...] = (
    Scope("read:users", ADMIN, "read any user of the tenant (profiles, accounts, directory)"),
    Scope("create:users", ADMIN, "create users"),
    Scope("update:users", ADMIN, "update any user, its policies and identities"),
    Scope("delete:users", ADMIN, "delete users"),
    Scope("read:device_credentials", ADMIN, "list any user's device credentials"),
    Scope("create:device_credentials", ADMIN, "add a device credential to any user"),
    Scope("delete:device_credentials", ADMIN, "remove any user's device credentials"),
    Scope("read:authentication_methods", ADMIN, "list any user's passkeys and TOTP"),
    Scope("delete:authentication_methods", ADMIN, "remove any user's passkeys and TOTP"),
    Scope("read:secrets", ADMIN, "list any user's secrets and read their values"),
    Scope("write:secrets", ADMIN, "create, change and delete any user's secrets"),
    Scope("read:properties", ADMIN, "read any user's properties"),
    Scope("write:properties", ADMIN, "create, change and delete any user's properties"),
    Scope("create:user_tokens", ADMIN, "mint custom sign-in tokens (tenant setting needed)"),
    Scope("read:audit", ADMIN, "read the tenant's audit events"),
    Scope("read:stats", ADMIN, "read the tenant's daily sign-in and sign-up counts"),
    Scope("read:sessions", ADMIN, "list any user's sign-in sessions"),
    Scope("delete:sessions", ADMIN, "sign any user out of every session"),
    Scope("read:connections", ADMIN, "list and read the tenant's connections"),
    Scope("create:connections", ADMIN, "add a connection to another identity provider"),
    Scope("update:connections", ADMIN, "change a connection's options and applications"),
    Scope("delete:connections", ADMIN, "delete a connection to another identity provider"),
    Scope("read:current_user", USER, "read the caller's own user"),
    Scope("update:current_user", USER, "change the caller's own user (name, password, email)"),
    Scope("update:current_user_metadata", USER, "change the caller's own metadata"),
    Scope("create:current_user_metadata", USER, "add to the caller's own metadata"),
    Scope("delete:current_user_metadata", USER, "remove the caller's metadata and MFA"),
    Scope("update:current_user_identities", USER, "link and unlink the caller's identities"),
    Scope("create:current_user_device_credentials", USER, "add a device credential to itself"),
    Scope("delete:current_user_device_credentials", USER, "remove its own device credentials"),
    Scope("read:current_user_secrets", USER, "list its own secrets and read their values"),
    Scope("write:current_user_secrets", USER, "create, change and delete its own secrets"),
    Scope("read:current_user_properties", USER, "read its own properties"),
    Scope("write:current_user_properties", USER, "create, change and delete its own properties"),
    Scope("manage:applications", KEY, "register, change and delete the tenant's applications"),
    Scope("manage:webhooks", KEY, "register, change, test and delete the tenant's webhooks"),
    Scope("manage:console", KEY, "grant, list and revoke the tenant's console members"),
)

BY_NAME = {scope.name: scope for scope in CATALOGUE}
CURRENT_USER_SCOPES = tuple(s.name for s in CATALOGUE if s.holders == USER)
ADMIN_SCOPES = tuple(s.name for s in CATALOGUE if s.holders == ADMIN)
# What an API key may be given.
KEY_SCOPES = (ALL, *(s.name for s in CATALOGUE))
# OpenID Connect's scopes: they ask for claims and a refresh token, not for permissions.
OFFLINE_ACCESS = "offline_access"
OPENID = "openid"  # asks for an ID token
OIDC_SCOPES = (OPENID, "profile", "email", OFFLINE_ACCESS)
# What an application may ask for, and be allowed (never a key-only scope).
APP_SCOPES = (*OIDC_SCOPES, *CURRENT_USER_SCOPES, *ADMIN_SCOPES)
# An application's allowed_scopes until it is given others: no any-user (admin) scope.
DEFAULT_APP_SCOPES = (*OIDC_SCOPES, *CURRENT_USER_SCOPES)
# What an application that names no scope asks for (RFC 6749 §3.3's pre-defined value).
DEFAULT_REQUESTED = (OPENID,)


def unknown_key_scopes(scopes: list[str]) -> list[str]:
    """The scopes in `scopes` an API key cannot hold (neither `*` nor catalogued)."""
    return [scope for scope in scopes if scope != ALL and scope not in BY_NAME]


def unknown_scope_message(scope: str, known: Iterable[str] = KEY_SCOPES) -> str:
    """The error message for an unknown scope: it names the closest known scope, if one is
    close, so that a typo (`read:user`) says what was meant (`read:users`)."""
    close = difflib.get_close_matches(scope, list(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"Unknown scope {scope!r}; {hint}see the scope catalogue"


def granted(
    requested: Iterable[str], *, held: Collection[str], allowed: Collection[str]
) -> list[str]:
    """What an application gets of the scopes it asked for (in the order asked): those
    its `allowed` list names and, unless an OIDC scope, the user holds."""
    return [
        scope
        for scope in dict.fromkeys(requested)
        if scope in allowed and (scope in OIDC_SCOPES or scope in held)
    ]
