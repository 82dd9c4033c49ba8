"""HTTP plumbing shared by all surfaces: the Flask class, request ids, trailing-slash
tolerance, JSON-only bodies, and the size limit of the few views that take a file upload.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from types import FunctionType
from typing import Any, TypeVar

from flask import Flask, Response, g, request
from flask.sessions import SessionInterface

from app.core.errors import PayloadTooLarge, UnsupportedMediaType

F = TypeVar("F", bound=Callable[..., Any])

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class _NoFlaskSession(SessionInterface):
    """Flask's session cookie is not used: the hosted pages and the console sign cookies of
    their own (api/hosted/browser.py, api/console/cookies.py). Opening it anyway cost every
    request a serializer and a cookie parse; `flask.session` is a NullSession here, so a
    write to it fails loudly instead of setting a cookie nobody reads."""

    def open_session(self, app: Flask, request: Any) -> None:
        return None  # Flask then uses make_null_session

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        return None


class GatehouseFlask(Flask):
    """Flask without per-request work this app does not need: no session cookie, and each
    hook's and view's "is it async?" check made once per function instead of on every
    call (a dozen `inspect` calls per request)."""

    session_interface = _NoFlaskSession()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: dict[FunctionType, Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if type(func) is not FunctionType:  # bound methods, partials: not kept
            return super().ensure_sync(func)
        sync = self._sync_functions.get(func)
        if sync is None:
            sync = self._sync_functions[func] = super().ensure_sync(func)
        return sync


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


def upload(limit_setting: str) -> Callable[[F], F]:
    """Mark a view as taking a multipart/form-data upload of at most
    `app.config[limit_setting]` bytes, in place of MAX_CONTENT_LENGTH (put it right under
    the route, as `accepts_form`). A larger Content-Length is refused (413) before any of
    the body is read; a chunked body is counted as it streams, and is a 413 once past the
    limit; any other body type is a 415."""

    def decorate(view: F) -> F:
        view._upload_limit = limit_setting  # type: ignore[attr-defined]
        view._accepts_form = True  # type: ignore[attr-defined]
        return view

    return decorate


def _limit_upload(app: Flask) -> None:
    view = app.view_functions.get(request.endpoint or "")
    setting = getattr(view, "_upload_limit", None)
    if setting is None:
        return
    limit = int(app.config[setting])
    # werkzeug enforces it too, on what it reads: a chunked body, and the form parser.
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"Payload content length greater than maximum allowed: {limit}",
            code="file_too_large",
        )
    if _has_body() and request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            "The body must be multipart/form-data", code="unsupported_media_type"
        )


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or mimetype.endswith("+json")


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")


def install_http_hooks(app: Flask) -> None:
    """Request id on every request and response; the size limit of an upload; 415 for a
    non-JSON body."""

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex

    @app.before_request
    def limit_uploads() -> None:
        # Before the JSON-only check, so an oversized upload of any type is a 413, and
        # before the input guards, which parse a form body.
        if request.routing_exception is None and request.method in _BODY_METHODS:
            _limit_upload(app)

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
