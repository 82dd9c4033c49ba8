"""CORS for browser apps (flask-cors): the token, revocation, userinfo and key endpoints
answer an `Origin` that a registered application lists, echoed exactly; anything else
gets no `Access-Control-*` header. No credentials (cookies) are ever allowed cross-site:
these endpoints take bearer tokens and form bodies, never the sign-in cookie.

flask-cors takes its allowed origins as configuration; ours live in the database and
change at run time, so each response gets flask-cors' evaluation with the one origin
that was found to be allowed (or none).
"""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, request
from flask_cors.core import get_cors_options, set_cors_headers
from sqlalchemy.exc import SQLAlchemyError

from app.applications import service as application_service

log = logging.getLogger(__name__)

PATHS = frozenset({"/oauth/token", "/oauth/revoke", "/userinfo", "/.well-known/jwks.json"})
OPTIONS = {
    "methods": ["GET", "POST", "OPTIONS"],
    "allow_headers": [
        "Authorization",
        "Content-Type",
        "X-Request-ID",
        "X-Tenant-ID",
        "x-m2-organization-id",
    ],
    "expose_headers": ["X-Request-ID", "WWW-Authenticate", "Retry-After"],
    "supports_credentials": False,
    "max_age": 600,
    "vary_header": False,  # added below, for refused origins too
}


def _allowed(origin: str) -> bool:
    try:
        return application_service.origin_allowed(origin)
    except SQLAlchemyError:
        log.warning("CORS origin look-up failed; answering without CORS headers")
        return False


def init_cors(app: Flask) -> None:
    """Add CORS headers to the responses of PATHS (errors and preflights included)."""

    @app.after_request
    def cors_headers(response: Response) -> Response:
        if request.path not in PATHS:
            return response
        # The answer depends on the Origin even when it is refused: caches must key on it.
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin and _allowed(origin):
            # A compiled, escaped pattern: flask-cors would read a plain string holding a
            # dot as a regular expression.
            exact = re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)
            set_cors_headers(response, get_cors_options(app, OPTIONS, {"origins": [exact]}))
        return response
