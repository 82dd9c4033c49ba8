"""The me surface (the me API): `/users/me`, `/users/me/settings`, `/users/me/verify-email`,
`/auth/password-reset`.

Errors here carry that document's keys: `{"success": false, "succes": false, "error": KEY,
"message": ...}` (the document spells the flag both ways, so both are sent).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.core.errors import AppError, ErrorBodySchema
from app.core.smorest import Blueprint


class ErrorSchema(ErrorBodySchema):
    """`{"success": false, "succes": false, "error": KEY, "message": ...}` (render_error)."""

    success = ma.fields.Boolean(required=True, validate=ma.validate.Equal(False))
    succes = ma.fields.Boolean(required=True, validate=ma.validate.Equal(False))
    error = ma.fields.String(required=True, metadata={"description": "e.g. NO_BODY_GIVEN"})
    message = ma.fields.String(required=True)
    request_id = ma.fields.String(required=True)


blp = Blueprint(
    "me",
    __name__,
    description="The caller's own user document (the me API)",
    error_schema=ErrorSchema,
)

# The domain's codes in this surface's keys (the rest are upper-cased as they are).
_KEYS_BY_CODE = {
    "validation_failed": "INVALID_BODY",
    "invalid_json": "INVALID_BODY",
    "invalid_request": "INVALID_BODY",
    "unsupported_media_type": "INVALID_BODY",
    "password_too_short": "INVALID_BODY",
    "password_too_long": "INVALID_BODY",
    "invalid_characters": "INVALID_BODY",
    "reset_host_not_allowed": "INVALID_BODY",
    "reset_token_invalid": "INVALID_TOKEN",
    "mail_not_configured": "TOKEN_OR_EMAIL_NOT_SET",
}


def render_error(err: AppError, request_id: str) -> dict[str, Any]:
    key = _KEYS_BY_CODE.get(err.code, err.code.upper())
    body: dict[str, Any] = {
        "success": False,
        "succes": False,
        "error": key,
        "message": err.message,
        "request_id": request_id,
    }
    if err.fields:
        body["fields"] = err.fields
    return body


from app.api.me import mfa_routes, routes  # noqa: E402,F401  (registers the routes on blp)

__all__ = ["ErrorSchema", "blp", "render_error"]
