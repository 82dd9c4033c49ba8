"""Routes of the management surface for a user's second factors and linked identities."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal, requires
from app.api.management import blp
from app.api.management.schemas import EnrollmentSchema, IdentitySchema, LinkIdentitySchema
from app.credentials import identities as identity_service
from app.credentials import mfa as mfa_service
from app.credentials.models import MfaEnrolment
from app.users import service as user_service


@blp.route("/api/v2/users/<user_id>/enrollments", methods=["GET"])
@requires("read:users", "read:current_user")
@blp.errors(404)
@blp.response(200, EnrollmentSchema(many=True))
def list_enrollments(user_id: str) -> list[MfaEnrolment]:
    """List a user's MFA enrolments"""
    return mfa_service.list_enrolments(user_service.get_user(user_id))


@blp.route("/api/v2/users/<user_id>/multifactor/<provider>", methods=["DELETE"])
@requires("update:users", "delete:current_user_metadata")
@blp.errors(400, 404)
@blp.response(204)
def delete_multifactor(user_id: str, provider: str) -> None:
    """Remove a user's MFA provider (google-authenticator is the TOTP enrolment)"""
    mfa_service.remove(
        actor=current_principal(), user=user_service.get_user(user_id), provider=provider
    )


@blp.route("/api/v2/users/<user_id>/identities", methods=["POST"])
@requires("update:users", "update:current_user_identities")
@blp.arguments(LinkIdentitySchema)
@blp.errors(400, 404, 409, 413, 415)
@blp.response(201, IdentitySchema(many=True))
def link_identity(body: dict[str, Any], user_id: str) -> list[dict[str, Any]]:
    """Link another user's account to this one (by provider and user_id, or link_with)"""
    principal = current_principal()
    primary = identity_service.link(
        actor=principal,
        primary=user_service.get_user(user_id),
        expected_audience=principal.audience,
        provider=body.get("provider"),
        user_id=str(body["user_id"]) if "user_id" in body else None,
        link_with=body.get("link_with"),
    )
    return primary.identities


@blp.route("/api/v2/users/<user_id>/identities/<provider>/<identity_user_id>", methods=["DELETE"])
@requires("update:users", "update:current_user_identities")
@blp.errors(400, 404, 409)
@blp.response(200, IdentitySchema(many=True))
def unlink_identity(user_id: str, provider: str, identity_user_id: str) -> list[dict[str, Any]]:
    """Unlink an identity from a user (it becomes a separate user again)"""
    primary = identity_service.unlink(
        actor=current_principal(),
        primary=user_service.get_user(user_id),
        provider=provider,
        user_id=identity_user_id,
    )
    return primary.identities
