"""Custom tokens (the accounts API, Firebase-style): minted by a backend for a user id,
exchanged once for a session; the exchange signs the user up when the id is new.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.audit import tasks as audit_tasks
from app.core import security
from app.core.db import db, utcnow
from app.core.errors import Forbidden, InvalidGrant
from app.core.jobs import enqueue_after_commit
from app.core.tenancy import Principal
from app.tenants import service as tenant_service
from app.tenants.models import Tenant
from app.tokens import grants
from app.tokens import service as token_service
from app.users import service as user_service

PURPOSE = "custom-token"


@dataclass
class CustomToken:
    token: str
    expires_in: int


def _tenant_managing_tokens(tenant_id: str) -> Tenant:
    """The tenant, if it allows user-token management (the accounts API asks it of every /token/
    call); Forbidden otherwise."""
    tenant = tenant_service.get_tenant(tenant_id)
    if not tenant.allow_user_token_management:
        raise Forbidden(
            "This tenant does not allow user token management "
            "(enable the allow_user_token_management setting)",
            code="user_token_management_disabled",
        )
    return tenant


def generate_custom_token(*, actor: Principal, user_id: str) -> CustomToken:
    """Mint a single-use custom token for `user_id`; Forbidden unless the tenant allows
    user-token management. The issuance is audited by the worker."""
    tenant = _tenant_managing_tokens(actor.tenant_id)
    user_service.check_user_id(user_id)
    jti = security.random_hex(16)
    ttl = current_app.config["CUSTOM_TOKEN_TTL"]
    token = security.signed_dumps(
        current_app.config["SECRET_KEY"], PURPOSE, {"tid": tenant.id, "uid": user_id, "jti": jti}
    )
    enqueue_after_commit(
        audit_tasks.record_event,
        tenant.id,
        {
            "action": "token.custom_issued",
            "actor": actor.label,
            "user_id": user_id,
            "target": jti,
            "ip": actor.ip,
            "at": utcnow().isoformat(),
        },
    )
    return CustomToken(token=token, expires_in=ttl)


def sign_in_with_custom_token(*, actor: Principal, token: str) -> token_service.TokenSet:
    """Exchange a custom token once for tokens, creating the user if needed; InvalidGrant
    for a forged, expired, used or other-tenant token, or a blocked user; Forbidden when
    the tenant does not allow user-token management."""
    _tenant_managing_tokens(actor.tenant_id)
    ttl = current_app.config["CUSTOM_TOKEN_TTL"]
    try:
        payload = security.signed_loads(current_app.config["SECRET_KEY"], PURPOSE, token, ttl)
    except security.SignedTokenError as exc:
        raise InvalidGrant(
            "The custom token is not valid or has expired", code="invalid_custom_token"
        ) from exc
    if not isinstance(payload, dict) or payload.get("tid") != actor.tenant_id:
        raise InvalidGrant("The custom token is not valid", code="invalid_custom_token")
    user_id, jti = str(payload["uid"]), str(payload["jti"])
    token_service.spend_once(
        jti=jti,
        user_id=user_id,
        ttl=ttl,
        used=InvalidGrant("The custom token was already used", code="invalid_custom_token"),
    )
    user = user_service.find_user(user_id)
    is_new = user is None
    if user is None:
        user = user_service.create_user(user_id=user_id, actor=actor)
    if user.blocked:
        raise InvalidGrant("The user is blocked", code="user_blocked")
    token_service.record_login(user, actor=actor.label, ip=actor.ip, method="custom_token")
    tokens = token_service.issue_session(user=user)
    tokens.is_new_user = is_new
    db.session.flush()
    return tokens


def refresh_for_backend(*, actor: Principal, refresh_token: str) -> token_service.TokenSet:
    """A backend's refresh of one of its tenant's sessions (the accounts API's `/token/refresh`);
    Forbidden when the tenant does not allow user-token management, InvalidGrant."""
    _tenant_managing_tokens(actor.tenant_id)
    # Runs in the caller's tenant: a token of another tenant is refused as not valid.
    return grants.refresh_grant(refresh_token=refresh_token, ip=actor.ip)
