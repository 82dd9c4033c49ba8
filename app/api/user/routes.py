"""Routes of the user surface: base user, full profile, the caller's own profile."""

from __future__ import annotations

from app.api.auth import current_principal, requires
from app.api.user import blp
from app.api.user.schemas import BaseUserSchema, ProfileSchema
from app.users import service as user_service
from app.users.models import User


@blp.route("/user/profile", methods=["GET"])
@requires(None, "read:current_user", user_arg=None)
@blp.response(200, ProfileSchema)
def get_own_profile() -> User:
    """Get the caller's full profile"""
    return user_service.get_user(current_principal().user_id or "")


@blp.route("/user/<user_id>", methods=["GET"])
@requires("read:users", "read:current_user")
@blp.response(200, BaseUserSchema)
def get_user(user_id: str) -> User:
    """Get the base user row"""
    return user_service.get_user(user_id)


@blp.route("/user/<user_id>/profile", methods=["GET"])
@requires("read:users", "read:current_user")
@blp.response(200, ProfileSchema)
def get_profile(user_id: str) -> User:
    """Get a user's full profile"""
    return user_service.get_user(user_id)
