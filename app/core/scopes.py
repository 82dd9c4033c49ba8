"""The scope catalogue: every named scope, who holds it and what it allows, in one list.

User tokens carry the `USER` scopes (acting on the user itself), admins' tokens add the
`ADMIN` ones (acting on any user of the tenant); `KEY` scopes are only ever given to API
keys. API keys may hold any catalogued scope or `*`. Adding a scope is one line below.
Policy scopes (`read:table:orders`, from a user's policies) and a user's `custom_scopes`
are not catalogued: they name the tenant's own resources.
"""

from __future__ import annotations

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
    Scope("read:secrets", ADMIN, "list any user's secrets and read their values"),
    Scope("write:secrets", ADMIN, "create, change and delete any user's secrets"),
    Scope("read:properties", ADMIN, "read any user's properties"),
    Scope("write:properties", ADMIN, "create, change and delete any user's properties"),
    Scope("create:user_tokens", ADMIN, "mint custom sign-in tokens (tenant setting needed)"),
    Scope("read:audit", ADMIN, "read the tenant's audit events"),
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
)

BY_NAME = {scope.name: scope for scope in CATALOGUE}
CURRENT_USER_SCOPES = tuple(s.name for s in CATALOGUE if s.holders == USER)
ADMIN_SCOPES = tuple(s.name for s in CATALOGUE if s.holders == ADMIN)
# What an API key may be given.
KEY_SCOPES = (ALL, *(s.name for s in CATALOGUE))


def unknown_key_scopes(scopes: list[str]) -> list[str]:
    """The scopes in `scopes` an API key cannot hold (neither `*` nor catalogued)."""
    return [scope for scope in scopes if scope != ALL and scope not in BY_NAME]
