"""Routes of the me surface: read and update the caller's own user document."""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
from flask import Response, jsonify, request

from app.api.auth import client_ip, current_principal, public, requires, tenant_header
from app.api.etag import check_if_match, with_etag
from app.api.me import blp
from app.api.me.schemas import (
    MeDocumentSchema,
    MeUpdatedSchema,
    MeUpdateSchema,
    OkSchema,
    ResetConfirmSchema,
    ResetRequestSchema,
    SettingsListSchema,
)
from app.core import ratelimit
from app.core.errors import Invalid
from app.credentials import reset as password_reset
from app.credentials import service as credential_service
from app.users import service as user_service
from app.users.models import User


def _own_user() -> User:
    return user_service.get_user(current_principal().user_id or "")


def _json_body(empty_key: str = "NO_BODY_GIVEN") -> Any:
    """The parsed body; `empty_key` when there is none, INVALID_BODY when it is not JSON."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise Invalid("The request did not include a body", code=empty_key)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise Invalid("The body is not valid JSON", code="INVALID_BODY") from exc


def _validated(schema: ma.Schema, data: Any) -> Any:
    try:
        return schema.load(data)
    except ma.ValidationError as exc:
        raise Invalid(
            "The body does not have the expected format",
            code="INVALID_BODY",
            fields=exc.normalized_messages(),
        ) from exc


def _document(user: User) -> Response:
    return with_etag(jsonify(MeDocumentSchema().dump(user)), user)


@blp.route("/users/me", methods=["GET"])
@requires(None, "read:current_user", user_arg=None)
@blp.response(200, MeDocumentSchema)
def get_me() -> Response:
    """Get your own user document"""
    return _document(_own_user())


@blp.route("/users/me", methods=["PUT", "PATCH"])
@requires(None, "update:current_user", user_arg=None)
@blp.response(200, MeUpdatedSchema)
def update_me() -> Response:
    """Update your first name, last name or password"""
    data = _json_body()
    if not isinstance(data, dict):
        raise Invalid("The body must be a JSON object", code="INVALID_BODY")
    body = _validated(MeUpdateSchema(), data)
    if not body:
        raise Invalid("No mutations were given", code="NO_MUTATIONS_GIVEN")
    user = _own_user()
    check_if_match(user)
    names = {"first_name": "firstname", "last_name": "lastname"}
    changes = {field: body[key] for field, key in names.items() if key in body}
    if changes:
        user_service.update_user(user=user, changes=changes)
    if "password" in body:
        credential_service.change_password(
            actor=current_principal(), user=user, new_password=body["password"]
        )
    return with_etag(jsonify(MeUpdatedSchema().dump(user)), user)


@blp.route("/users/me/settings", methods=["PUT"])
@requires(None, "update:current_user", user_arg=None)
@blp.response(200)
def put_settings() -> Response:
    """Replace your settings with a list of {key, value}"""
    data = _json_body()
    items = _validated(SettingsListSchema(), {"items": data})["items"]
    user = _own_user()
    check_if_match(user)
    user_service.update_user(user=user, changes={"settings": items})
    return with_etag(jsonify(user.settings), user)


@blp.route("/auth/password-reset", methods=["POST"])
@public
@blp.response(200, OkSchema)
def request_password_reset() -> dict[str, str]:
    """Mail a password-reset link (the answer is the same whether or not a user matched)"""
    body = _validated(ResetRequestSchema(), _json_body("EMPTY_BODY"))
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
@public
@blp.response(200, OkSchema)
def confirm_password_reset() -> dict[str, str]:
    """Choose a new password with a reset token (revokes every session)"""
    body = _validated(ResetConfirmSchema(), _json_body("EMPTY_BODY"))
    password_reset.confirm_reset(token=body["token"], password=body["password"], ip=client_ip())
    return {"msg": "ok"}
