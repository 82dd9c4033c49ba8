"""The directory surface (seed 002): `/api/v1/users...`, username/password users with
permission policies. Errors: `{"error": "<message>", "code": "<KEY>"}`."""

from __future__ import annotations

from typing import Any

from app.core.errors import AppError
from app.core.smorest import Blueprint

blp = Blueprint("directory", __name__, description="Username/password users and policies")


def render_error(err: AppError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": err.message,
        "code": err.code.upper(),
        "request_id": request_id,
    }
    if err.fields:
        body["fields"] = err.fields
    return body


from app.api.directory import routes  # noqa: E402,F401  (registers the routes on blp)

__all__ = ["blp", "render_error"]
