"""Routes of the me surface: read and update the caller's own user document."""

from __future__ import annotations

from typing import Any

from flask import request

from app.api.auth import client_ip, current_principal, public, requires, tenant_header
from app.api.etag import ETAG_HEADER, check_if_match, etag_headers
from app.api.fields import at_most
from app.api.me import blp
from app.api.me.schemas import (
    MAX_SETTINGS,
    MeDocumentSchema,
    MeUpdatedSchema,
    MeUpdateSchema,
    OkSchema,
    ResetConfirmSchema,
    ResetRequestSchema,
    SettingSchema,
)
from app.core import ratelimit
from app.core.errors import Invalid
from app.credentials import reset as password_reset
from app.credentials import service as credential_service
from app.credentials import verification
from app.users import service as user_service
from app.users.models import User


def _own_user() -> User:
    return user_service.get_user(current_principal().user_id or "")


def _tagged(user: User) -> tuple[User, int, dict[str, str]]:
    """The user with its ETag (the `update_hash` that If-Match compares)."""
    return user, 200, etag_headers(user)


@blp.route("/users/me", methods=["GET"])
@requires(None, "read:current_user", user_arg=None)
@blp.response(200, MeDocumentSchema, headers=ETAG_HEADER)
def get_me() -> tuple[User, int, dict[str, str]]:
    """Get your own user document"""
    return _tagged(_own_user())


@blp.route("/users/me", methods=["PUT", "PATCH"])
@requires(None, "update:current_user", user_arg=None)
@blp.arguments(MeUpdateSchema)
@blp.response(200, MeUpdatedSchema, headers=ETAG_HEADER)
@blp.errors(412)
def update_me(body: dict[str, Any]) -> tuple[User, int, dict[str, str]]:
    """Update your first name, last name or password"""
    if not body:
        raise Invalid("No mutations were given", code="NO_MUTATIONS_GIVEN")
    user = _own_user()
    check_if_match(user)
    names = {"first_name": "firstname", "last_name": "lastname"}
    changes = {field: body[key] for field, key in names.items() if key in body}
    if changes:
        user_service.update_user(
            user=user, changes=changes, actor=_label(), ip=current_principal().ip
        )
    if "password" in body:
        credential_service.change_password(
            actor=current_principal(), user=user, new_password=body["password"]
        )
    return _tagged(user)


@blp.route("/users/me/settings", methods=["PUT"])
@requires(None, "update:current_user", user_arg=None)
@blp.arguments(SettingSchema(many=True), validate=at_most(MAX_SETTINGS))
@blp.response(200, SettingSchema(many=True), headers=ETAG_HEADER)
@blp.errors(412)
def put_settings(items: list[dict[str, Any]]) -> tuple[list[Any], int, dict[str, str]]:
    """Replace your settings with a list of {key, value}"""
    user = _own_user()
    check_if_match(user)
    user_service.update_user(
        user=user, changes={"settings": items}, actor=_label(), ip=current_principal().ip
    )
    return user.settings, 200, etag_headers(user)


def _reset_token_tenant() -> str | None:
    """The tenant the confirmation's reset token names (read, not yet trusted), so the
    confirmation runs in that tenant's scope; None for no readable token (then refused)."""
    body = request.get_json(silent=True)
    token = body.get("token") if isinstance(body, dict) else None
    return password_reset.token_tenant(token) if isinstance(token, str) else None


@blp.route("/auth/password-reset", methods=["POST"])
@public(tenant_from=tenant_header)
@blp.tenant_header("The tenant of the account (required, either header name)")
@blp.arguments(ResetRequestSchema)
@blp.response(200, OkSchema)
@blp.errors(429)
def request_password_reset(body: dict[str, Any]) -> dict[str, str]:
    """Mail a password-reset link (the answer is the same whether or not a user matched)"""
    tenant_id = tenant_header()
    if tenant_id is None:
        raise Invalid("X-Tenant-ID names the tenant", code="INVALID_BODY")
    ip = client_ip() or "-"
    addresses = ratelimit.login_keys(body.get("email"), body.get("username"))
    ratelimit.check("RATELIMIT_RESET_PER_IP", ip)
    ratelimit.check_each("RATELIMIT_RESET_PER_ADDRESS", tenant_id, addresses)
    password_reset.request_reset(
        tenant_id=tenant_id,
        username=body.get("username"),
        email=body.get("email"),
        host=body["host"],
        ip=ip,
    )
    return {"msg": "ok"}


@blp.route("/auth/password-reset/confirm", methods=["POST"])
@public(tenant_from=_reset_token_tenant)
@blp.arguments(ResetConfirmSchema)
@blp.response(200, OkSchema)
def confirm_password_reset(body: dict[str, Any]) -> dict[str, str]:
    """Choose a new password with a reset token (revokes every session)"""
    password_reset.confirm_reset(token=body["token"], password=body["password"], ip=client_ip())
    return {"msg": "ok"}


@blp.route("/users/me/verify-email", methods=["POST"])
@requires(None, "update:current_user", user_arg=None)
@blp.response(200, OkSchema)
@blp.errors(429)
def send_verification_email() -> dict[str, str]:
    """Mail yourself a link that confirms your email address (send again to resend)"""
    principal = current_principal()
    ratelimit.check("RATELIMIT_VERIFY_PER_USER", principal.tenant_id, principal.user_id or "")
    verification.send_verification(user=_own_user())
    return {"msg": "ok"}


def _label() -> str:
    return current_principal().label
