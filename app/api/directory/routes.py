"""Routes of the directory surface: the caller, the user list, and one user by name with
its password and policies."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import request

from app.api.auth import current_principal, requires, user_by_username_for
from app.api.directory import blp
from app.api.directory.schemas import (
    CreateUserSchema,
    MeSchema,
    MessageSchema,
    NewPasswordSchema,
    PolicyInSchema,
    PolicySchema,
    UsernameSchema,
    UserSchema,
)
from app.api.fields import ListQuerySchema
from app.credentials import service as credential_service
from app.users import policies as policy_service
from app.users import service as user_service
from app.users.models import Policy, User

DONE = {"message": "Operation completed successfully"}
LINK_HEADER = {
    "Link": {"description": 'The next page: `<url>; rel="next"`', "schema": {"type": "string"}}
}


@blp.route("/api/v1/users/me", methods=["GET"])
@requires(None, "read:current_user", user_arg=None)
@blp.response(200, MeSchema)
def get_me() -> User:
    """Get the current user and its permissions"""
    return user_service.get_user(current_principal().user_id or "")


@blp.route("/api/v1/users", methods=["GET"])
@requires("read:users", user_arg=None)
@blp.arguments(ListQuerySchema, location="query")
@blp.response(200, UsernameSchema(many=True), headers=LINK_HEADER)
def list_users(query: dict[str, Any]) -> tuple[list[User], int, dict[str, str]]:
    """List all users (admin); paged by limit and cursor, with a Link header"""
    page = policy_service.list_directory_users(**query)
    headers = {}
    if page.next_cursor:
        params = {"limit": query.get("limit") or len(page.items), "cursor": page.next_cursor}
        headers["Link"] = f'<{request.base_url}?{urlencode(params)}>; rel="next"'
    return page.items, 200, headers


@blp.route("/api/v1/users/<user_name>", methods=["POST"])
@requires("create:users", user_arg=None)
@blp.arguments(CreateUserSchema)
@blp.response(201, UserSchema)
@blp.errors(409)
def create_user(body: dict[str, Any], user_name: str) -> User:
    """Create a user with a password and initial policies (the path's name wins)"""
    return policy_service.create_directory_user(
        actor=current_principal(),
        username=user_name,
        password=body["password"],
        policies=body["initial_policies"],
    )


@blp.route("/api/v1/users/<user_name>", methods=["GET"])
@requires("read:users", "read:current_user", user_arg=None)
@blp.response(200, UserSchema)
def get_user(user_name: str) -> User:
    """Get a user's details (admin, or the user)"""
    return user_by_username_for("read:users", user_name)


@blp.route("/api/v1/users/<user_name>", methods=["DELETE"])
@requires("delete:users", user_arg=None)
@blp.response(200, MessageSchema)
def delete_user(user_name: str) -> dict[str, str]:
    """Delete a user (admin)"""
    user_service.delete_user(
        actor=current_principal(), user=policy_service.get_by_username(user_name)
    )
    return DONE


@blp.route("/api/v1/users/<user_name>/password", methods=["PUT"])
@requires("update:users", "update:current_user", user_arg=None)
@blp.arguments(NewPasswordSchema)
@blp.response(200, MessageSchema)
def change_password(body: dict[str, Any], user_name: str) -> dict[str, str]:
    """Change a user's password (admin, or the user); other sessions are revoked"""
    credential_service.change_password(
        actor=current_principal(),
        user=user_by_username_for("update:users", user_name),
        new_password=body["new_password"],
    )
    return DONE


@blp.route("/api/v1/users/<user_name>/policies", methods=["GET"])
@requires("read:users", user_arg=None)
@blp.response(200, PolicySchema(many=True))
def get_policies(user_name: str) -> list[Policy]:
    """Get a user's policies (admin)"""
    return policy_service.get_by_username(user_name).policies


@blp.route("/api/v1/users/<user_name>/policies", methods=["PUT"])
@requires("update:users", user_arg=None)
@blp.arguments(PolicyInSchema(many=True))
@blp.response(200, PolicySchema(many=True))
def put_policies(body: list[dict[str, Any]], user_name: str) -> list[Policy]:
    """Replace a user's policies (admin)"""
    user = policy_service.get_by_username(user_name)
    return policy_service.replace_policies(user=user, policies=body)
