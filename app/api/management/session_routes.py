"""Routes of the management surface for a user's sign-in sessions: list them, and sign the
user out of all of them (Auth0's "Get/Delete sessions for user")."""

from __future__ import annotations

from typing import Any

from app.api.auth import client_ip, current_principal, requires
from app.api.management import blp
from app.api.management.session_schemas import SessionListSchema
from app.tokens import sessions as session_service
from app.users import service as user_service

SESSIONS = "/api/v2/users/<user_id>/sessions"


@blp.route(SESSIONS, methods=["GET"])
@requires(("read:users", "read:sessions"), user_arg=None)
@blp.errors(404)
@blp.response(200, SessionListSchema)
def list_user_sessions(user_id: str) -> dict[str, Any]:
    """List a user's live sign-in sessions, the most recently used first"""
    user = user_service.get_user(user_id)
    return {"sessions": session_service.live_sessions(user=user, current_session_id=None)}


@blp.route(SESSIONS, methods=["DELETE"])
@requires(("update:users", "delete:sessions"), user_arg=None)
@blp.errors(404)
@blp.response(204)
def delete_user_sessions(user_id: str) -> None:
    """Sign a user out of every session, revoking its access and refresh tokens"""
    session_service.sign_out_everywhere(
        user=user_service.get_user(user_id), actor=current_principal().label, ip=client_ip()
    )
