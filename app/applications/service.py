"""Registered applications: create (secret shown once), read, update, rotate the secret,
delete; client look-up and authentication for the token endpoint; redirect-URI and
CORS-origin checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from flask import current_app
from sqlalchemy import select

from app.applications.models import CONFIDENTIAL, PUBLIC, Application, ApplicationOrigin
from app.audit import service as audit_service
from app.core import security
from app.core.db import db, utcnow
from app.core.errors import Conflict, Invalid, NotFound, Unauthenticated
from app.core.jobs import execute_all_tenants
from app.core.scopes import APP_SCOPES, unknown_scope_message
from app.core.tenancy import Principal, find_by_global_id
from app.tenants import service as tenant_service
from app.tokens import service as token_service

TYPES = (PUBLIC, CONFIDENTIAL)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
URI_LISTS = ("redirect_uris", "post_logout_redirect_uris")
HOSTNAME = re.compile(r"[a-z0-9.-]{1,253}|[0-9a-f:.]{2,45}")
# The authority of a loopback redirect URI that may take any port: the host alone, or a
# port written plainly (no userinfo, no empty, zero or zero-padded port).
LOOPBACK_AUTHORITY = re.compile(r"(localhost|127\.0\.0\.1|\[::1\])(?::([1-9][0-9]{0,4}))?", re.I)
# A port as an authority writes it, if it has one: 1-65535 without leading zeros.
PORT = re.compile(r"[1-9][0-9]{0,4}")


@dataclass
class IssuedApplication:
    """A new application plus its secret (confidential apps), which exists only here."""

    application: Application
    client_secret: str | None


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(message, code="invalid_application", fields={field: [message]})


def check_redirect_uri(uri: str, field: str = "redirect_uris") -> str:
    """`uri` when an app may register it (RFC 9700 §2.1, RFC 8252 §7): an absolute URI
    without a fragment; https, or http on a loopback host, or a private-use scheme of a
    native app (reverse domain name, so it holds a dot); or a page of this issuer itself
    (the admin console's callback), trusted by configuration whatever its scheme (production
    refuses an insecure ISSUER unless told). Invalid otherwise."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not scheme or parts.fragment or "#" in uri:
        raise _invalid(field, f"{uri!r} must be an absolute URI without a fragment")
    if "@" in parts.netloc or not _port_is_plain(parts.netloc):
        raise _invalid(field, f"{uri!r} must name its host without userinfo, with a valid port")
    if scheme == "https" and parts.hostname:
        return uri
    if _is_issuer_page(parts):
        return uri
    if scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return uri
    if scheme not in ("http", "https") and "." in scheme:
        return uri
    raise _invalid(
        field, f"{uri!r} must use https (http only on localhost, or an app's own scheme)"
    )


def _is_issuer_page(parts: SplitResult) -> bool:
    issuer = urlsplit(str(current_app.config["ISSUER"]))
    return (parts.scheme.lower(), parts.netloc.lower()) == (
        issuer.scheme.lower(),
        issuer.netloc.lower(),
    )


def _port_is_plain(netloc: str) -> bool:
    """Whether an authority's port, if it writes one, is 1-65535 without leading zeros."""
    colon = netloc.rfind(":")
    if colon <= netloc.rfind("]"):
        return True  # no port (an IPv6 literal's colons are inside its brackets)
    port = netloc[colon + 1 :]
    return bool(PORT.fullmatch(port)) and int(port) <= 65535


def _loopback_key(uri: str) -> tuple[str, ...] | None:
    """An http loopback URI without its port (None for any other URI, and for one with a
    fragment, userinfo, or an empty, zero or zero-padded port)."""
    if "#" in uri:
        return None
    parts = urlsplit(uri)
    found = LOOPBACK_AUTHORITY.fullmatch(parts.netloc)
    if parts.scheme != "http" or found is None:
        return None
    if found.group(2) is not None and int(found.group(2)) > 65535:
        return None
    return found.group(1).lower(), parts.path, parts.query


def redirect_uri_registered(application: Application, uri: str) -> bool:
    """Whether `uri` is one of the app's redirect URIs, exactly; except that on a loopback
    host over http any port matches (RFC 8252 §7.3: a native app listens on whichever
    port the system gives it). Never a URI with a fragment (RFC 6749 §3.1.2)."""
    if "#" in uri:
        return False
    if uri in application.redirect_uris:
        return True
    key = _loopback_key(uri)
    return key is not None and any(
        _loopback_key(registered) == key for registered in application.redirect_uris
    )


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]` in lower case without a default port, as a browser sends it
    in `Origin`; Invalid for anything else (a path, a wildcard, `null`)."""
    parts = urlsplit(origin.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    hostname = parts.hostname or ""
    if (
        scheme not in ("http", "https")
        or not HOSTNAME.fullmatch(hostname)
        or port == -1
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise _invalid("allowed_origins", f"{origin!r} is not an origin (scheme://host[:port])")
    default_port = 443 if scheme == "https" else 80
    suffix = f":{port}" if port not in (None, default_port) else ""
    host = f"[{hostname}]" if ":" in hostname else hostname
    return f"{scheme}://{host}{suffix}"


def _set_origins(application: Application, origins: list[str]) -> None:
    unique = list(dict.fromkeys(normalize_origin(origin) for origin in origins))
    application.origins = [
        ApplicationOrigin(tenant_id=application.tenant_id, origin=origin, position=index)
        for index, origin in enumerate(unique)
    ]


def _apply(application: Application, fields: dict[str, Any]) -> None:
    if "name" in fields:
        application.name = fields["name"]
    for key in URI_LISTS:
        if key in fields:
            uris = [check_redirect_uri(uri, key) for uri in fields[key]]
            setattr(application, key, list(dict.fromkeys(uris)))
    if "allowed_origins" in fields:
        _set_origins(application, fields["allowed_origins"])
    if "allowed_scopes" in fields:
        application.allowed_scopes = _checked_scopes(fields["allowed_scopes"])
    if "mfa_required" in fields:
        application.mfa_required = bool(fields["mfa_required"])


def _checked_scopes(scopes: list[str]) -> list[str]:
    """The scopes an app may be allowed: OIDC's and the catalogue's user and admin scopes
    (an admin scope only when listed here); Invalid, naming the closest, for others."""
    for scope in scopes:
        if scope not in APP_SCOPES:
            raise _invalid("allowed_scopes", unknown_scope_message(scope, APP_SCOPES))
    return list(dict.fromkeys(scopes))


def create_application(
    *,
    tenant_id: str,
    name: str,
    type: str,
    redirect_uris: list[str] | None = None,
    allowed_origins: list[str] | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    allowed_scopes: list[str] | None = None,
    mfa_required: bool = False,
    actor: Principal | None = None,
) -> IssuedApplication:
    """Register an app in a tenant; a confidential one gets a secret, returned once and
    stored as a hash. Without `allowed_scopes` it may obtain the OIDC and current-user
    scopes. NotFound for an unknown tenant, Invalid for a bad URI, origin or scope."""
    if type not in TYPES:
        raise _invalid("type", "type must be public or confidential")
    tenant_service.get_tenant(tenant_id)
    secret = security.random_token(32) if type == CONFIDENTIAL else None
    application = Application(
        id=security.random_hex(16),
        tenant_id=tenant_id,
        type=type,
        secret_hash=security.sha256_hex(secret) if secret else None,
        redirect_uris=[],
        post_logout_redirect_uris=[],
        mfa_required=mfa_required,
    )
    _apply(
        application,
        {
            "name": name,
            "redirect_uris": redirect_uris or [],
            "allowed_origins": allowed_origins or [],
            "post_logout_redirect_uris": post_logout_redirect_uris or [],
            **({"allowed_scopes": allowed_scopes} if allowed_scopes is not None else {}),
        },
    )
    db.session.add(application)
    db.session.flush()
    _audit("application.created", application, actor)
    return IssuedApplication(application, secret)


def list_applications(*, tenant_id: str) -> list[Application]:
    """The tenant's applications, oldest first; NotFound for an unknown tenant."""
    tenant_service.get_tenant(tenant_id)
    query = select(Application).order_by(Application.created_at, Application.id)
    return list(db.session.scalars(query))


def get_application(*, tenant_id: str, client_id: str) -> Application:
    """The tenant's application `client_id`; NotFound (also for another tenant's)."""
    tenant_service.get_tenant(tenant_id)
    application = db.session.scalar(select(Application).where(Application.id == client_id))
    if application is None:
        raise NotFound("Application not found", code="application_not_found")
    return application


def update_application(*, tenant_id: str, client_id: str, fields: dict[str, Any]) -> Application:
    """Change an app's name, redirect URIs, origins, logout URIs or allowed scopes (a
    narrower list narrows its sessions at their next refresh); NotFound, Invalid."""
    application = get_application(tenant_id=tenant_id, client_id=client_id)
    _apply(application, fields)
    application.updated_at = utcnow()
    db.session.flush()
    return application


def rotate_secret(*, tenant_id: str, client_id: str, actor: Principal) -> IssuedApplication:
    """Give a confidential app a new secret (returned once, stored as a hash): the old one
    is refused from now on; audited `application.secret_rotated`. NotFound; Conflict
    `application_has_no_secret` for a public app, which authenticates with none."""
    application = get_application(tenant_id=tenant_id, client_id=client_id)
    if not application.is_confidential:
        raise Conflict(
            "A public application has no client secret to rotate",
            code="application_has_no_secret",
        )
    secret = security.random_token(32)
    application.secret_hash = security.sha256_hex(secret)
    application.updated_at = utcnow()
    db.session.flush()
    _audit("application.secret_rotated", application, actor)
    return IssuedApplication(application, secret)


def delete_application(*, tenant_id: str, client_id: str, actor: Principal | None = None) -> None:
    """Delete an app, its codes, and end every session started for it; NotFound."""
    application = get_application(tenant_id=tenant_id, client_id=client_id)
    token_service.revoke_client_sessions(application.id)
    _audit("application.deleted", application, actor)
    db.session.delete(application)
    db.session.flush()


def _audit(action: str, application: Application, actor: Principal | None) -> None:
    audit_service.record(
        action=action,
        actor=actor.label if actor else "system",
        target=application.id,
        ip=actor.ip if actor else None,
        data={"client_id": application.id, "name": application.name, "type": application.type},
    )


def find_client(client_id: str | None) -> Application | None:
    """The application with this client_id in any tenant (client ids are global), or None."""
    if not client_id or len(client_id) > 64:
        return None
    return find_by_global_id(Application.id, client_id)


def _invalid_client(
    challenge: str, message: str = "Client authentication failed"
) -> Unauthenticated:
    return Unauthenticated(message, code="invalid_client", scheme=challenge, realm="gatehouse")


def authenticate_client(
    *, client_id: str, client_secret: str | None, challenge: str = "Basic"
) -> Application:
    """The application a token request names (RFC 6749 §2.3): a confidential one must
    prove its secret (compared in constant time), a public one must send none.
    Unauthenticated invalid_client otherwise, challenging with the scheme used."""
    application = find_client(client_id)
    expected = (
        application.secret_hash
        if application is not None and application.secret_hash
        else security.sha256_hex("")
    )
    given = security.sha256_hex(client_secret or "")
    matches = security.constant_time_equals(given, expected)
    if application is None:
        raise _invalid_client(challenge)
    if application.is_confidential and not (client_secret and matches):
        raise _invalid_client(challenge)
    if not application.is_confidential and client_secret:
        raise _invalid_client(challenge, "A public application has no client secret")
    return application


def origin_allowed(origin: str) -> bool:
    """Whether an application of the tenant in scope lists `origin` (exactly, scheme and
    port included) among the origins its browser code may call from: one tenant's app
    never opens another tenant's requests to its page."""
    normalized = _normalized_or_none(origin)
    if normalized is None:
        return False
    query = select(ApplicationOrigin.application_id).where(ApplicationOrigin.origin == normalized)
    return db.session.scalar(query.limit(1)) is not None


def origin_registered_all_tenants(origin: str) -> bool:
    """Whether any application of any tenant lists `origin`: for what names no tenant (a
    preflight carries no credential; the JWKS is every tenant's)."""
    normalized = _normalized_or_none(origin)
    if normalized is None:
        return False
    query = select(ApplicationOrigin.application_id).where(ApplicationOrigin.origin == normalized)
    return execute_all_tenants(query.limit(1)).scalar() is not None


def _normalized_or_none(origin: str) -> str | None:
    try:
        return normalize_origin(origin)
    except Invalid:
        return None
