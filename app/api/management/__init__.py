"""The management surface: `/api/v2/...`, compatible with Auth0's Management API v2 and
its SDKs. Errors: `{statusCode, error, message, errorCode}`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import request

from app.core.errors import AppError, ErrorBodySchema
from app.core.smorest import Blueprint

# Domain codes → Auth0's errorCode; a 400 not listed here is `invalid_body` for a request
# with a body and `invalid_query_string` otherwise.
_ERROR_CODES = {
    "user_not_found": "inexistent_user",
    "insufficient_scope": "insufficient_scope",
    "forbidden_field": "insufficient_scope",
    "forbidden_user": "insufficient_scope",
    "user_token_required": "insufficient_scope",
    "user_exists": "auth0_idp_error",
    "username_exists": "auth0_idp_error",
    "invalid_mfa_provider": "invalid_uri",
    "primary_identity": "invalid_uri",
    "invalid_query": "invalid_query_string",
    "invalid_sort": "invalid_query_string",
    "invalid_limit": "invalid_query_string",
    "invalid_page": "invalid_query_string",
    "rate_limited": "too_many_requests",
    "job_not_found": "inexistent_job",
    "connection_not_found": "inexistent_connection",
    "connection_exists": "connection_conflict",
    "database_connection_readonly": "operation_not_supported",
    "file_too_large": "payload_too_large",
    "invalid_range": "invalid_query_string",
}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ErrorSchema(ErrorBodySchema):
    """Auth0's error body, as render_error writes it."""

    statusCode = ma.fields.Integer(required=True)
    error = ma.fields.String(required=True)
    message = ma.fields.String(required=True)
    errorCode = ma.fields.String(required=True)


blp = Blueprint(
    "management",
    __name__,
    description="Auth0 Management API v2 compatible users",
    error_schema=ErrorSchema,
)


def _error_code(err: AppError) -> str:
    if err.code in _ERROR_CODES:
        return _ERROR_CODES[err.code]
    if err.status == 400 and err.code not in ("tenant_required",):
        return "invalid_body" if request.method in _BODY_METHODS else "invalid_query_string"
    return err.code


def _message(err: AppError) -> str:
    """The message, naming every failing field (Auth0 says which property is wrong)."""
    if not err.fields:
        return err.message
    parts = []
    for name, problems in err.fields.items():
        text = "; ".join(str(p) for p in problems) if isinstance(problems, list) else problems
        parts.append(f"'{name}': {text}")
    kind = "Payload" if request.method in _BODY_METHODS else "Query"
    return f"{kind} validation error: {', '.join(parts)}"


def render_error(err: AppError, request_id: str) -> dict[str, Any]:
    return {
        "statusCode": err.status,
        "error": HTTPStatus(err.status).phrase,
        "message": _message(err),
        "errorCode": _error_code(err),
    }


from app.api.management import (  # noqa: E402,F401
    authentication_method_routes,
    connection_routes,
    device_routes,
    export_routes,
    identity_routes,
    job_routes,
    routes,
    session_routes,
    stats_routes,
)

__all__ = ["ErrorSchema", "blp", "render_error"]
