"""Routes of the user surface for a user's secrets (the user API): metadata, value, CRUD."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal, requires
from app.api.etag import ETAG_HEADER, check_if_match, etag_headers
from app.api.fields import ListQuerySchema
from app.api.user import blp
from app.api.user.schemas import (
    CreateSecretSchema,
    SecretPageSchema,
    SecretSchema,
    UpdateSecretSchema,
)
from app.core.pagination import Page
from app.secrets import service as secret_service
from app.secrets.models import Secret

READ = ("read:secrets", "read:current_user_secrets")
WRITE = ("write:secrets", "write:current_user_secrets")
Tagged = tuple[Secret, int, dict[str, str]]


@blp.route("/user/<user_id>/secrets", methods=["GET"])
@requires(*READ)
@blp.arguments(ListQuerySchema, location="query")
@blp.response(200, SecretPageSchema)
def list_secrets(query: dict[str, Any], user_id: str) -> Page[Secret]:
    """List a user's secrets (names and metadata, never values)"""
    return secret_service.list_secrets(user_id=user_id, **query)


@blp.route("/user/<user_id>/secrets", methods=["POST"])
@requires(*WRITE)
@blp.arguments(CreateSecretSchema)
@blp.response(201, SecretSchema, headers=ETAG_HEADER)
@blp.errors(409)
def create_secret(body: dict[str, Any], user_id: str) -> Tagged:
    """Create a secret"""
    secret = secret_service.create_secret(user_id=user_id, name=body["name"], value=body["value"])
    return secret, 201, etag_headers(secret)


@blp.route("/user/<user_id>/secrets/<secret_id>", methods=["GET"])
@requires(*READ)
@blp.response(200, SecretSchema, headers=ETAG_HEADER)
def get_secret(user_id: str, secret_id: str) -> Tagged:
    """Get a secret's metadata"""
    secret = secret_service.get_secret(user_id=user_id, secret_id=secret_id)
    return secret, 200, etag_headers(secret)


@blp.route("/user/<user_id>/secrets/<secret_id>/value", methods=["GET"])
@requires(*READ)
@blp.response(
    200,
    {"type": "string"},
    content_type="text/plain",
    description="The value, exactly as stored",
    headers={"Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}}},
)
def get_secret_value(user_id: str, secret_id: str) -> tuple[str, int, dict[str, str]]:
    """Read a secret's value as text/plain (audited)"""
    value = secret_service.read_value(
        actor=current_principal(), user_id=user_id, secret_id=secret_id
    )
    return value, 200, {"Cache-Control": "no-store"}


@blp.route("/user/<user_id>/secrets/<secret_id>", methods=["PUT"])
@requires(*WRITE)
@blp.arguments(UpdateSecretSchema)
@blp.response(200, SecretSchema, headers=ETAG_HEADER)
@blp.errors(409, 412)
def update_secret(body: dict[str, Any], user_id: str, secret_id: str) -> Tagged:
    """Rename a secret or replace its value (honours If-Match)"""
    secret = secret_service.get_secret(user_id=user_id, secret_id=secret_id)
    check_if_match(secret)
    secret = secret_service.update_secret(secret=secret, changes=body)
    return secret, 200, etag_headers(secret)


@blp.route("/user/<user_id>/secrets/<secret_id>", methods=["DELETE"])
@requires(*WRITE)
@blp.response(204)
def delete_secret(user_id: str, secret_id: str) -> None:
    """Delete a secret"""
    secret_service.delete_secret(user_id=user_id, secret_id=secret_id)
