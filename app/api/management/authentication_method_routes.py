"""Routes of the management surface for a user's authentication methods (passkeys and
TOTP), as Auth0's `/api/v2/users/{id}/authentication-methods`."""

from __future__ import annotations

from app.api.auth import current_principal, requires
from app.api.management import blp
from app.api.management.schemas import AuthenticationMethodSchema
from app.credentials import authentication_methods as method_service
from app.credentials.authentication_methods import AuthenticationMethod
from app.users import service as user_service


@blp.route("/api/v2/users/<user_id>/authentication-methods", methods=["GET"])
@requires("read:authentication_methods", "read:current_user")
@blp.errors(404)
@blp.response(200, AuthenticationMethodSchema(many=True))
def list_authentication_methods(user_id: str) -> list[AuthenticationMethod]:
    """List a user's authentication methods (passkeys, TOTP)"""
    return method_service.list_methods(user_service.get_user(user_id))


@blp.route(
    "/api/v2/users/<user_id>/authentication-methods/<authentication_method_id>",
    methods=["DELETE"],
)
@requires("delete:authentication_methods", "delete:current_user_metadata")
@blp.errors(404)
@blp.response(204)
def delete_authentication_method(user_id: str, authentication_method_id: str) -> None:
    """Delete one of a user's authentication methods (a passkey, or the TOTP enrolment)"""
    method_service.delete_method(
        actor=current_principal(),
        user=user_service.get_user(user_id),
        method_id=authentication_method_id,
    )
