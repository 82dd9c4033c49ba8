"""HTTP plumbing shared by all surfaces: request ids, trailing-slash tolerance, JSON-only
bodies.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, g, request

from app.core.errors import UnsupportedMediaType

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class StripTrailingSlash:
    """WSGI middleware: `/a/b/` is routed as `/a/b`, so both spellings answer the same
    without a redirect (the accounts API writes its paths with a trailing slash)."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if len(path) > 1 and path.endswith("/"):
            environ["PATH_INFO"] = path.rstrip("/") or "/"
        return self.wsgi_app(environ, start_response)


def accepts_form(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view as taking form bodies too (OAuth endpoints)."""
    view._accepts_form = True  # type: ignore[attr-defined]
    return view


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or mimetype.endswith("+json")


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")


def install_http_hooks(app: Flask) -> None:
    """Request id on every request and response; 415 for a non-JSON body."""

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex

    @app.before_request
    def refuse_non_json_bodies() -> None:
        if request.routing_exception is not None:
            return  # 404/405 win over the body's type
        if request.method not in _BODY_METHODS or not _has_body():
            return
        mimetype = request.mimetype or ""
        if _is_json(mimetype):
            return
        view = app.view_functions.get(request.endpoint or "")
        if mimetype in FORM_MIMETYPES and getattr(view, "_accepts_form", False):
            return
        raise UnsupportedMediaType(
            "The body must be JSON (Content-Type: application/json)",
            code="unsupported_media_type",
        )

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if response.status_code == 204:
            response.headers.pop("Content-Type", None)  # no body, so no type
        response.headers["X-Request-ID"] = getattr(g, "request_id", "") or uuid.uuid4().hex
        return response
