"""Routes of the accounts surface: look up, create, read, patch and delete accounts."""

from __future__ import annotations

from typing import Any

from app.api.accounts import blp
from app.api.accounts.schemas import (
    AccountQuerySchema,
    AccountSchema,
    CreateAccountSchema,
    CustomTokenSchema,
    GenerateTokenSchema,
    PatchAccountSchema,
    RefreshSchema,
    SessionSchema,
    SignInSchema,
    WithoutEmail,
)
from app.api.auth import api_key_only, client_ip, current_principal, requires
from app.core import ratelimit
from app.tokens import custom as custom_tokens
from app.tokens import service as token_service
from app.users import service as user_service
from app.users.models import User


def _account(user: User) -> User | WithoutEmail:
    """One account, with the email left out when the caller may not see it."""
    visible = user_service.email_visible(actor=current_principal(), user=user)
    return user if visible else WithoutEmail(user)


@blp.route("/auth/user", methods=["GET"])
@requires("read:users", user_arg=None)
@blp.arguments(AccountQuerySchema, location="query")
@blp.response(200, AccountSchema(many=True))
def find_accounts(query: dict[str, Any]) -> list[User]:
    """Find accounts by user id or email"""
    if "userId" in query:
        user = user_service.find_user(query["userId"])
        matches = [user] if user is not None else []
        if "email" in query:
            wanted = query["email"].casefold()
            matches = [u for u in matches if (u.email or "").casefold() == wanted]
        return matches
    return user_service.find_by_email(query["email"])


@blp.route("/auth/user", methods=["POST"])
@requires("create:users", user_arg=None)
@blp.arguments(CreateAccountSchema)
@blp.response(200, AccountSchema)
@blp.errors(409)
def create_account(body: dict[str, Any]) -> User:
    """Create an account"""
    return user_service.create_user(
        user_id=body.get("uid"),
        email=body.get("email"),
        password=body.get("password"),
        email_verified=body.get("emailVerified", False),
        display_name=body.get("displayName"),
        photo_url=body.get("photoURL"),
        actor=current_principal(),
    )


@blp.route("/users/current", methods=["GET"])
@requires(None, "read:current_user", user_arg=None)
@blp.response(200, AccountSchema)
def get_current_account() -> User | WithoutEmail:
    """Get the caller's own account"""
    return _account(user_service.get_user(current_principal().user_id or ""))


@blp.route("/users/<user_id>", methods=["GET"])
@requires("read:users", "read:current_user")
@blp.response(200, AccountSchema)
def get_account(user_id: str) -> User | WithoutEmail:
    """Get an account"""
    return _account(user_service.get_user(user_id))


@blp.route("/users/<user_id>", methods=["PATCH"])
@requires("update:users", "update:current_user")
@blp.arguments(PatchAccountSchema)
@blp.response(200, AccountSchema)
def patch_account(body: dict[str, Any], user_id: str) -> User | WithoutEmail:
    """Change an account's email or its verified flag"""
    changes = {"email_verified" if k == "emailVerified" else k: v for k, v in body.items()}
    user = user_service.change_account_email(
        actor=current_principal(), user=user_service.get_user(user_id), changes=changes
    )
    return _account(user)


@blp.route("/users/<user_id>", methods=["DELETE"])
@requires("delete:users", user_arg=None)
@blp.response(204)
def delete_account(user_id: str) -> None:
    """Delete an account"""
    user_service.delete_user(actor=current_principal(), user=user_service.get_user(user_id))


@blp.route("/token/generate", methods=["POST"])
@requires("create:user_tokens", user_arg=None)
@blp.arguments(GenerateTokenSchema)
@blp.response(200, CustomTokenSchema)
def generate_token(body: dict[str, Any]) -> custom_tokens.CustomToken:
    """Generate a single-use custom token for a user"""
    return custom_tokens.generate_custom_token(actor=current_principal(), user_id=body["userId"])


@blp.route("/token/signin", methods=["POST"])
@api_key_only("create:user_tokens")
@blp.arguments(SignInSchema)
@blp.response(200, SessionSchema)
@blp.errors(429)
def sign_in_with_token(body: dict[str, Any]) -> token_service.TokenSet:
    """Sign in (or up) with a custom token"""
    ratelimit.check("RATELIMIT_REFRESH_PER_IP", client_ip() or "-")
    return custom_tokens.sign_in_with_custom_token(actor=current_principal(), token=body["token"])


@blp.route("/token/refresh", methods=["POST"])
@api_key_only("create:user_tokens")
@blp.arguments(RefreshSchema)
@blp.response(200, SessionSchema)
@blp.errors(429)
def refresh_token(body: dict[str, Any]) -> token_service.TokenSet:
    """Exchange a refresh token for new tokens"""
    ratelimit.check("RATELIMIT_REFRESH_PER_IP", client_ip() or "-")
    return custom_tokens.refresh_for_backend(
        actor=current_principal(), refresh_token=body["refreshToken"]
    )
