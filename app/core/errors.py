"""One error hierarchy for the whole service, and the single handler that renders it.

Services raise `AppError` subclasses; the handler turns those, werkzeug's HTTP errors,
webargs validation errors and anything unexpected into the calling surface's shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import Flask, Response, g, jsonify
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class AppError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status: int = 500
    code: str = "internal_error"
    message: str = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        if code:
            self.code = code
        self.fields = fields
        self.headers = dict(headers or {})


class Invalid(AppError):
    status, code, message = 400, "invalid_request", "The request is invalid"


class Unauthenticated(AppError):
    """401. Says which scheme the caller should use (`Bearer`, or `Basic` for a client's
    credentials), with an optional realm and RFC 6750 error code: the surfaces' error
    handling turns them into the `WWW-Authenticate` challenge, so domain code never
    writes the header."""

    status, code, message = 401, "unauthenticated", "Missing or invalid credentials"

    def __init__(
        self,
        message: str | None = None,
        *,
        scheme: str = "Bearer",
        realm: str | None = None,
        error: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.scheme = scheme
        self.realm = realm
        self.error = error

    @property
    def challenge(self) -> str:
        """The `WWW-Authenticate` value: `Bearer`, `Basic realm="gatehouse"`,
        `Bearer error="invalid_token"`."""
        params = [
            f'{name}="{value}"'
            for name, value in (("realm", self.realm), ("error", self.error))
            if value
        ]
        return f"{self.scheme} {', '.join(params)}" if params else self.scheme


def challenge_headers(err: AppError) -> dict[str, str]:
    """The headers an error's answer carries: its own, plus the `WWW-Authenticate`
    challenge of a 401 (unless the error already names one)."""
    headers = dict(err.headers)
    if isinstance(err, Unauthenticated) and not any(
        name.lower() == "www-authenticate" for name in headers
    ):
        headers["WWW-Authenticate"] = err.challenge
    return headers


class InvalidGrant(AppError):
    """OAuth2 `invalid_grant`: wrong credentials or a bad refresh/custom token (401)."""

    status, code, message = 401, "invalid_grant", "The credentials or grant are not valid"


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "The credential does not allow this"


class NotFound(AppError):
    status, code, message = 404, "not_found", "Not found"


class MethodNotAllowed(AppError):
    status, code, message = 405, "method_not_allowed", "Method not allowed on this path"


class Conflict(AppError):
    status, code, message = 409, "conflict", "The resource already exists"


class PreconditionFailed(AppError):
    status, code, message = 412, "precondition_failed", "The resource has changed (If-Match)"


class UriTooLong(AppError):
    status, code, message = 414, "uri_too_long", "The URL is too long"


class PayloadTooLarge(AppError):
    status, code, message = 413, "payload_too_large", "The request body is too large"


class UnsupportedMediaType(AppError):
    status, code, message = 415, "unsupported_media_type", "The body must be application/json"


class RateLimited(AppError):
    status, code, message = 429, "rate_limited", "Too many requests"


class Unavailable(AppError):
    status, code, message = 503, "unavailable", "A backing service is unavailable"


_HTTP_ERRORS: dict[int, type[AppError]] = {
    400: Invalid,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    414: UriTooLong,
    415: UnsupportedMediaType,
    429: RateLimited,
    503: Unavailable,
}


def _validation_fields(messages: Any) -> dict[str, Any]:
    """Flatten webargs' {location: {field: [msgs]}} into {field: [msgs]}."""
    if not isinstance(messages, dict):
        return {"_body": messages}
    fields: dict[str, Any] = {}
    for location, errs in messages.items():
        if isinstance(errs, dict):
            fields.update(errs)
        else:
            fields[location] = errs
    return fields


def to_app_error(exc: BaseException) -> AppError:
    """Translate any exception into an AppError (unknown ones become a 500)."""
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, HTTPException):
        cls = _HTTP_ERRORS.get(exc.code or 500, AppError)
        data = getattr(exc, "data", None) or {}
        if "messages" in data:
            fields = _validation_fields(data["messages"])
            if fields.get("json") == ["Invalid JSON body."] or fields.get("form") == [
                "Invalid JSON body."
            ]:
                return Invalid("The body is not valid JSON", code="invalid_json")
            return Invalid("The request failed validation", code="validation_failed", fields=fields)
        err = cls() if cls is not AppError else AppError(exc.description)
        if cls is AppError:
            err.status = exc.code or 500
        # Keep what the exception says beyond its HTML body: `Allow` on a 405 (RFC 9110),
        # `Retry-After` on a 429.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                err.headers[name] = value
        return err
    if isinstance(exc, StaleDataError):
        return PreconditionFailed("The resource was changed concurrently", code="concurrent_update")
    if _is_database_down(exc):
        return Unavailable("The database is unavailable", code="database_unavailable")
    if _is_broker_error(exc):
        return Unavailable("The message broker is unavailable", code="broker_unavailable")
    return AppError()


def _is_database_down(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    # A driver error that reached here unwrapped (code working on a raw DBAPI connection)
    # means the same: every path answers 503 while the database is down, never 500.
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installs
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def _is_broker_error(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    return isinstance(exc, KombuOperationalError | RedisConnectionError)


Renderer = Callable[[AppError, str], dict[str, Any]]


def render_default(err: AppError, request_id: str) -> dict[str, Any]:
    """The default error body: `{error, message, status, request_id[, fields]}`."""
    body: dict[str, Any] = {
        "error": err.code,
        "message": err.message,
        "status": err.status,
        "request_id": request_id,
    }
    if err.fields:
        body["fields"] = err.fields
    return body


class ErrorBodySchema(ma.Schema):
    """Base of each surface's error schema (for the OpenAPI document): no other keys, and
    the field messages of a validation error."""

    class Meta:
        unknown = ma.RAISE

    fields = ma.fields.Dict(metadata={"description": "Messages by field, on validation errors"})


class DefaultErrorSchema(ErrorBodySchema):
    """The default error body, as `render_default` writes it."""

    error = ma.fields.String(required=True, metadata={"description": "A stable error code"})
    message = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    request_id = ma.fields.String(required=True)


def register_error_handlers(app: Flask, choose_renderer: Callable[[], Renderer]) -> None:
    """Render every error of `app` as JSON in the shape `choose_renderer()` picks."""

    def handle(exc: Exception) -> Response:
        err = to_app_error(exc)
        request_id = getattr(g, "request_id", "-")
        if err.status >= 500 and not isinstance(exc, AppError | HTTPException):
            log.error("request %s failed: %s", request_id, type(exc).__name__, exc_info=exc)
        try:
            renderer = choose_renderer()
        except Exception:  # the renderer lookup must never hide the original error
            renderer = render_default
        response = jsonify(renderer(err, request_id))
        response.status_code = err.status
        for name, value in challenge_headers(err).items():
            response.headers[name] = value
        return response

    app.register_error_handler(Exception, handle)
