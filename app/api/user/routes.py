"""Routes of the user surface: base user, full profile, the caller's own profile."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal, requires
from app.api.etag import ETAG_HEADER, etag_headers
from app.api.user import blp
from app.api.user.schemas import BaseUserSchema, ProfileSchema
from app.users import service as user_service
from app.users.read_model import UserView


def _tagged(user_id: str) -> tuple[UserView, int, dict[str, Any]]:
    """The user's read-only view with its ETag (the version digest that If-Match
    compares)."""
    user = user_service.get_user_view(user_id, caller=current_principal())
    return user, 200, etag_headers(user)


@blp.route("/user/profile", methods=["GET"])
@requires(None, "read:current_user", user_arg=None)
@blp.response(200, ProfileSchema, headers=ETAG_HEADER)
def get_own_profile() -> tuple[UserView, int, dict[str, str]]:
    """Get the caller's full profile"""
    return _tagged(current_principal().user_id or "")


@blp.route("/user/<user_id>", methods=["GET"])
@requires("read:users", "read:current_user")
@blp.response(200, BaseUserSchema, headers=ETAG_HEADER)
def get_user(user_id: str) -> tuple[UserView, int, dict[str, str]]:
    """Get the base user row"""
    return _tagged(user_id)


@blp.route("/user/<user_id>/profile", methods=["GET"])
@requires("read:users", "read:current_user")
@blp.response(200, ProfileSchema, headers=ETAG_HEADER)
def get_profile(user_id: str) -> tuple[UserView, int, dict[str, str]]:
    """Get a user's full profile"""
    return _tagged(user_id)
