"""The OAuth surface: `/oauth/token`, `/oauth/revoke`, `/.well-known/*` (OAuth2 errors)."""

from __future__ import annotations

from typing import Any

from app.core.errors import AppError
from app.core.smorest import Blueprint

blp = Blueprint("oauth", __name__, description="OAuth 2.0 token endpoint, revocation, JWKS")

OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "mfa_required",  # Auth0's answer to a password grant that lacks the second factor
    }
)
_BY_STATUS = {401: "invalid_client", 403: "unauthorized_client", 429: "temporarily_unavailable"}


def render_error(err: AppError, request_id: str) -> dict[str, Any]:
    """RFC 6749 §5.2: `{error, error_description}`."""
    if err.code in OAUTH_ERRORS:
        code = err.code
    elif err.status >= 500:
        code = "server_error" if err.status == 500 else "temporarily_unavailable"
    else:
        code = _BY_STATUS.get(err.status, "invalid_request")
    body: dict[str, Any] = {"error": code, "error_description": err.message}
    if err.fields:
        body["fields"] = err.fields
    return body


from app.api.oauth import routes  # noqa: E402,F401  (registers the routes on blp)

__all__ = ["blp", "render_error"]
