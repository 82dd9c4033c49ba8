"""The accounts surface (the accounts API, Firebase-style): `/auth/user`, `/users/{userId}`,
`/token/*`."""

from app.core.errors import DefaultErrorSchema as ErrorSchema
from app.core.errors import render_default as render_error
from app.core.smorest import Blueprint

blp = Blueprint(
    "accounts",
    __name__,
    description="Accounts by id or email (camelCase shapes)",
    error_schema=ErrorSchema,
)

from app.api.accounts import routes  # noqa: E402,F401  (registers the routes on blp)

__all__ = ["ErrorSchema", "blp", "render_error"]
