"""CORS for browser apps (flask-cors): the token, revocation, userinfo and key endpoints
answer an `Origin` that a registered application of the request's tenant lists, echoed
exactly; anything else gets no `Access-Control-*` header. No credentials (cookies) are
ever allowed cross-site: these endpoints take bearer tokens and form bodies, never the
sign-in cookie.

The request's tenant is the one its credential or parameters name: the verified token's,
X-Tenant-ID's, the client_id's (an application or an API key), a refresh token's. A
request that names none (a preflight, which carries no credential; the JWKS, which every
tenant shares) is answered for an origin some application lists; one that names two
tenants, for none.

flask-cors takes its allowed origins as configuration; ours live in the database and
change at run time, so each response gets flask-cors' evaluation with the one origin
that was found to be allowed (or none).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from urllib.parse import unquote

from flask import Flask, Response, g, request
from flask_cors.core import get_cors_options, set_cors_headers
from sqlalchemy.exc import SQLAlchemyError

from app.api.auth import TENANT_HEADERS
from app.applications import service as application_service
from app.core.tenancy import tenant_scope
from app.tenants import service as tenant_service
from app.tokens import service as token_service

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


class _NoOneTenant(Exception):
    """The request names two tenants, or a malformed one: it fails, and no origin may
    read why."""


def _basic_client_id() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return unquote(decoded.partition(":")[0]) or None


def _parameters() -> dict[str, str]:
    """The form or JSON body's string parameters (already parsed by the view, if any)."""
    body = request.form.to_dict() if request.form else (request.get_json(silent=True) or {})
    if not isinstance(body, dict):
        return {}
    return {key: value for key, value in body.items() if isinstance(value, str)}


def _client_tenant(client_id: str) -> str | None:
    """The tenant of the application, or else the API key, that `client_id` names."""
    if len(client_id) > 64 or not client_id.isprintable():
        return None  # names nothing (and a NUL would not reach the database)
    application = application_service.find_client(client_id)
    if application is not None:
        return application.tenant_id
    api_key = tenant_service.find_live_api_key(client_id)
    return api_key.tenant_id if api_key is not None else None


def _request_tenant() -> str | None:
    """The one tenant the request acts on, None when it names none; _NoOneTenant."""
    named: set[str] = set()
    principal = getattr(g, "principal", None)
    if principal is not None and principal.tenant_id:
        named.add(principal.tenant_id)
    named.update(request.headers[h].strip() for h in TENANT_HEADERS if request.headers.get(h))
    if not all(tenant.isprintable() for tenant in named):
        raise _NoOneTenant
    if request.method != "OPTIONS":
        params = _parameters()
        for client_id in (_basic_client_id(), params.get("client_id")):
            if client_id and (tenant := _client_tenant(client_id)) is not None:
                named.add(tenant)
        for name in ("refresh_token", "token"):
            if tenant := token_service.tenant_of_refresh_token(params.get(name) or ""):
                named.add(tenant)
    if len(named) > 1:
        raise _NoOneTenant
    return named.pop() if named else None


def _allowed(origin: str) -> bool:
    try:
        tenant_id = _request_tenant()
    except _NoOneTenant:
        return False
    try:
        if tenant_id is None:
            return application_service.origin_registered_all_tenants(origin)
        # An after_request hook, not a view: it runs after the view's scope closed (and for
        # preflights and errors that had none), so it enters the one tenant named itself.
        with tenant_scope(tenant_id):
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
