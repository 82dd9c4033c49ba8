"""The me surface (seed 003): `/users/me`, `/users/me/settings`, `/auth/password-reset`.

Errors here carry that document's keys: `{"success": false, "succes": false, "error": KEY,
"message": ...}` (the document spells the flag both ways, so both are sent).
"""

from __future__ import annotations

from typing import Any

from app.core.errors import AppError
from app.core.smorest import Blueprint

blp = Blueprint("me", __name__, description="The caller's own user document (seed 003)")

_KEYS_BY_CODE = {
    "validation_failed": "INVALID_BODY",
    "invalid_json": "INVALID_BODY",
    "invalid_request": "INVALID_BODY",
    "unsupported_media_type": "INVALID_BODY",
    "password_too_short": "INVALID_BODY",
    "password_too_long": "INVALID_BODY",
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

__all__ = ["blp", "render_error"]
