"""The OAuth surface: `/oauth/token`, `/oauth/revoke`, `/userinfo`, `/.well-known/*`
(OAuth 2 errors; RFC 6750's for the bearer-token endpoint `/userinfo`)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.core.errors import AppError, ErrorBodySchema
from app.core.smorest import Blueprint

OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "mfa_required",  # Auth0's answer to a password grant that lacks the second factor
        "too_many_attempts",  # Auth0's answer while an account's codes are locked (429)
        "invalid_token",
        "insufficient_scope",
    }
)
# Domain codes under their OAuth names: RFC 6750 §3.1's for what the bearer check of
# /userinfo raises, Auth0's for a locked second factor; a right password on a weak
# imported hash under the tenant's "reset" policy is `invalid_grant` (403) whose
# description says a reset is required (the grant itself cannot go through).
_ALIASES = {
    "missing_credentials": "invalid_token",
    "user_token_required": "insufficient_scope",
    "second_factor_locked": "too_many_attempts",
    "password_reset_required": "invalid_grant",
}
# Aliased codes a client must still tell apart: their description starts with the code.
_NAMED_IN_DESCRIPTION = frozenset({"password_reset_required"})
_BY_STATUS = {401: "invalid_client", 403: "unauthorized_client", 429: "temporarily_unavailable"}
_SERVER_ERRORS = ("server_error", "temporarily_unavailable")


class ErrorSchema(ErrorBodySchema):
    """RFC 6749 §5.2 `{error, error_description}`, as render_error writes it."""

    error = ma.fields.String(
        required=True, validate=ma.validate.OneOf(sorted(OAUTH_ERRORS) + list(_SERVER_ERRORS))
    )
    error_description = ma.fields.String(required=True)


blp = Blueprint(
    "oauth",
    __name__,
    description="OAuth 2.0 token endpoint, revocation, JWKS",
    error_schema=ErrorSchema,
)


def render_error(err: AppError, request_id: str) -> dict[str, Any]:
    """RFC 6749 §5.2: `{error, error_description}`."""
    if err.code in OAUTH_ERRORS:
        code = err.code
    elif err.code in _ALIASES:
        code = _ALIASES[err.code]
    elif err.status >= 500:
        code = "server_error" if err.status == 500 else "temporarily_unavailable"
    else:
        code = _BY_STATUS.get(err.status, "invalid_request")
    description = err.message
    if err.code in _NAMED_IN_DESCRIPTION:
        description = f"{err.code}: {description}"
    body: dict[str, Any] = {"error": code, "error_description": description}
    if err.fields:
        body["fields"] = err.fields
    return body


from app.api.oauth import routes  # noqa: E402,F401  (registers the routes on blp)

__all__ = ["ErrorSchema", "blp", "render_error"]
