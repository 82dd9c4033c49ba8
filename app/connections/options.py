"""What a connection's `options` may hold for each strategy, the presets' defaults, and the
checks a new or changed set of options goes through (a service raises Invalid from here).

Types and lengths are the surface's schema's business; this module decides which options a
strategy takes, which it needs, the scopes' grammar, and which URLs are acceptable.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from app.connections.models import APPLE, GITHUB, GOOGLE, MICROSOFT, OAUTH2, OIDC
from app.core.errors import Invalid
from app.core.outbound import OutboundRefused, resolve_checked

OIDC_DEFAULT_SCOPES = "openid profile email"
GITHUB_DEFAULT_SCOPE = "read:user user:email"
GITHUB_ENDPOINTS = {
    "authorizationURL": "https://github.com/login/oauth/authorize",
    "tokenURL": "https://github.com/login/oauth/access_token",
    "userinfoURL": "https://api.github.com/user",
}
# OIDC presets: the issuer each one discovers, unless its options name another
# (`discovery_url` or `issuer`, which is how tests point a preset at a local provider).
PRESET_ISSUERS = {
    GOOGLE: "https://accounts.google.com",
    MICROSOFT: "https://login.microsoftonline.com/common/v2.0",
    APPLE: "https://appleid.apple.com",
}
OIDC_STRATEGIES = frozenset({OIDC, *PRESET_ISSUERS})
# Microsoft's multi-tenant endpoints (`common`: work and personal accounts,
# `organizations`: work accounts only) publish the issuer as a template, and each ID
# token's `iss` names the signing-in user's own Entra tenant. The flow accepts the template
# from these discovery documents only (anyone's document could publish one otherwise), and
# then requires each token's `iss` to equal the template filled with the token's own `tid`
# claim (a GUID, nothing else), as Microsoft documents for multi-tenant apps. Every other
# provider's `iss` is compared exactly.
TENANT_PLACEHOLDER = "{tenantid}"
MULTI_TENANT_ISSUERS = {
    "https://login.microsoftonline.com/common/v2.0": (
        "https://login.microsoftonline.com/{tenantid}/v2.0"
    ),
    "https://login.microsoftonline.com/organizations/v2.0": (
        "https://login.microsoftonline.com/{tenantid}/v2.0"
    ),
}
# The same, by the discovery document's URL: {discovery URL: issuer template}.
MULTI_TENANT_DISCOVERY = {
    f"{issuer}/.well-known/openid-configuration": template
    for issuer, template in MULTI_TENANT_ISSUERS.items()
}
# Where Gatehouse puts what the upstream profile says: {our field: upstream field path}.
PROFILE_FIELDS = frozenset(
    {
        "user_id",
        "email",
        "email_verified",
        "name",
        "given_name",
        "family_name",
        "nickname",
        "picture",
        "username",
    }
)
URL_OPTIONS = ("discovery_url", "issuer", "authorizationURL", "tokenURL", "userinfoURL")
_OIDC_OPTIONS = frozenset(
    {"discovery_url", "issuer", "client_id", "client_secret", "scopes", "type"}
)
_ENDPOINTS = frozenset({"authorizationURL", "tokenURL", "userinfoURL"})
ALLOWED_OPTIONS: dict[str, frozenset[str]] = {
    **{strategy: _OIDC_OPTIONS for strategy in OIDC_STRATEGIES},
    OAUTH2: frozenset({"client_id", "client_secret", "scope", "profile_map", *_ENDPOINTS}),
    GITHUB: frozenset({"client_id", "client_secret", "scope", *_ENDPOINTS}),
}
BACK_CHANNEL = "back_channel"
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
FIELD_PATH = re.compile(r"[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}")


def invalid(field: str, message: str) -> Invalid:
    """The 400 for one failing property (its name as the request wrote it)."""
    return Invalid(message, code="invalid_connection", fields={field: [message]})


def checked_options(
    strategy: str,
    options: dict[str, Any],
    *,
    has_secret: bool,
    allow_http: bool,
    allow_private: bool = True,
) -> tuple[dict[str, Any], str | None]:
    """The options to store for `strategy` (defaults filled in, the secret taken out) and
    the client secret given, if any. `has_secret`: a secret is stored already, so the
    options need not carry one. Invalid for an option the strategy does not take, a
    missing one, a bad scope list, a URL that is not https (http only with
    FEDERATION_ALLOW_HTTP) or, unless `allow_private`, one whose host does not resolve
    or resolves to a non-public address (FEDERATION_ALLOW_PRIVATE_TARGETS)."""
    unknown = sorted(set(options) - ALLOWED_OPTIONS[strategy])
    if unknown:
        raise invalid(f"options.{unknown[0]}", f"not an option of the {strategy} strategy")
    stored = {key: value for key, value in options.items() if key != "client_secret"}
    secret = options.get("client_secret")
    if not stored.get("client_id"):
        raise invalid("options.client_id", "is required")
    if not secret and not has_secret:
        raise invalid("options.client_secret", "is required")
    for key in URL_OPTIONS:
        if key in stored:
            stored[key] = check_url(
                f"options.{key}", stored[key], allow_http=allow_http, allow_private=allow_private
            )
    if strategy in OIDC_STRATEGIES:
        _check_oidc(strategy, stored)
    else:
        _check_oauth2(strategy, stored)
    return stored, secret or None


def _check_oidc(strategy: str, stored: dict[str, Any]) -> None:
    if not stored.get("discovery_url") and not stored.get("issuer"):
        if strategy == OIDC:
            raise invalid("options.discovery_url", "discovery_url or issuer is required")
        stored["issuer"] = PRESET_ISSUERS[strategy]
    kind = stored.setdefault("type", BACK_CHANNEL)
    if kind != BACK_CHANNEL:
        raise invalid("options.type", f"{kind!r} is not supported: only 'back_channel' is")
    scopes = _scope_list("options.scopes", stored.setdefault("scopes", OIDC_DEFAULT_SCOPES))
    if "openid" not in scopes:
        raise invalid("options.scopes", "must include openid")


def _check_oauth2(strategy: str, stored: dict[str, Any]) -> None:
    if strategy == GITHUB:
        stored.setdefault("scope", GITHUB_DEFAULT_SCOPE)
        for key, default in GITHUB_ENDPOINTS.items():
            stored.setdefault(key, default)
    else:
        stored.setdefault("scope", "")
        for key in sorted(_ENDPOINTS):
            if not stored.get(key):
                raise invalid(f"options.{key}", "is required for the oauth2 strategy")
        _check_profile_map(stored.get("profile_map"))
    if stored["scope"]:
        _scope_list("options.scope", stored["scope"])


def _check_profile_map(profile_map: dict[str, str] | None) -> None:
    if not profile_map or "user_id" not in profile_map:
        raise invalid("options.profile_map", "must map user_id to the upstream's id field")
    for ours, theirs in profile_map.items():
        if ours not in PROFILE_FIELDS:
            raise invalid(
                f"options.profile_map.{ours}", f"must be one of {', '.join(sorted(PROFILE_FIELDS))}"
            )
        if not FIELD_PATH.fullmatch(theirs):
            raise invalid(
                f"options.profile_map.{ours}", "must be a field path (names joined by dots)"
            )


def _scope_list(field: str, value: str) -> list[str]:
    scopes = value.split(" ")
    if not all(SCOPE_TOKEN.fullmatch(scope) for scope in scopes):
        raise invalid(field, "must be scope names separated by single spaces")
    return scopes


def check_url(field: str, url: str, *, allow_http: bool, allow_private: bool = True) -> str:
    """`url` when a connection may call it: absolute, https (or http when `allow_http`),
    with a host and no userinfo or fragment, and (unless `allow_private`) a host that
    resolves to public addresses only (app/core/outbound.py). Invalid otherwise. The
    flow checks again before every call: where a name resolves can change."""
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        raise invalid(field, "must have a valid port") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise invalid(field, f"must be an absolute {' or '.join(schemes)} URL")
    if parts.username is not None or parts.fragment or "#" in url or any(c.isspace() for c in url):
        raise invalid(field, "must not hold userinfo, a fragment or spaces")
    if not allow_private:
        try:
            resolve_checked(url, allow_private=False, allow_http=allow_http)
        except OutboundRefused as exc:
            raise invalid(field, str(exc)) from None
    return url
