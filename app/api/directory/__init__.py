"""The directory surface (the directory API): `/api/v1/users...`, username/password users with
permission policies. Errors: `{"error": "<message>", "code": "<KEY>"}`."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.core.errors import AppError, ErrorBodySchema
from app.core.smorest import Blueprint


class ErrorSchema(ErrorBodySchema):
    """`{"error": "<message>", "code": "<KEY>"}`, as render_error writes it."""

    error = ma.fields.String(required=True, metadata={"description": "A readable message"})
    code = ma.fields.String(required=True, metadata={"description": "A stable UPPER_CASE key"})
    request_id = ma.fields.String(required=True)


blp = Blueprint(
    "directory",
    __name__,
    description="Username/password users and policies",
    error_schema=ErrorSchema,
)


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

__all__ = ["ErrorSchema", "blp", "render_error"]
