"""The browser side of the hosted pages: the CSRF cookie and its form token, the sign-in
session cookie (one per tenant), and signed hidden fields that carry a checked request
from one form to the next (the server keeps no state between the steps)."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, current_app, g, request

from app.core import security
from app.core.errors import Forbidden, Invalid

CSRF_COOKIE = "gh_csrf"
SESSION_COOKIE_PREFIX = "gh_sso_"
# How long a page's form may be filled in before it must be reloaded.
FORM_TTL = 30 * 60
# The second factor follows the password: its form is short-lived.
SECOND_FACTOR_TTL = 5 * 60
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_TENANT = re.compile(r"[0-9a-f]{1,32}")


def _secret() -> str:
    return str(current_app.config["SECRET_KEY"])


def _set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=current_app.config["LOGIN_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


def _csrf_value() -> str:
    """This browser's CSRF secret: the cookie's, or a new one set on the response."""
    value = g.get("csrf_value") or request.cookies.get(CSRF_COOKIE, "")
    if not _TOKEN.fullmatch(value):
        value = security.random_token(32)
        g.csrf_new = True
    g.csrf_value = value
    return value


def csrf_token() -> str:
    """The token a form carries: the CSRF cookie's value, signed (double submit)."""
    return security.signed_dumps(_secret(), "csrf", _csrf_value())


def check_csrf(token: str | None) -> None:
    """Forbidden `csrf_failed` unless the form's token signs this browser's CSRF cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    try:
        signed = security.signed_loads(_secret(), "csrf", token or "", FORM_TTL)
    except security.SignedTokenError:
        signed = None
    if not (isinstance(signed, str) and cookie and security.constant_time_equals(signed, cookie)):
        raise Forbidden(
            "This form has expired or did not come from this page. Please try again.",
            code="csrf_failed",
        )


def set_csrf_cookie(response: Response) -> None:
    if g.get("csrf_new"):
        _set_cookie(response, CSRF_COOKIE, g.csrf_value, None)


def seal(purpose: str, payload: dict[str, Any]) -> str:
    """A hidden-field value that carries `payload` to the next step, tamper-proof and
    bound to this browser's CSRF secret (so it is useless in another browser)."""
    return security.signed_dumps(
        _secret(), purpose, {"p": payload, "b": security.sha256_hex(_csrf_value())[:16]}
    )


def unseal(purpose: str, value: str | None, max_age: int = FORM_TTL) -> dict[str, Any]:
    """The payload of a sealed field from this browser; Invalid `form_expired` otherwise."""
    expired = Invalid(
        "This sign-in took too long or was started elsewhere. Go back to the app and try again.",
        code="form_expired",
    )
    try:
        sealed = security.signed_loads(_secret(), purpose, value or "", max_age)
    except security.SignedTokenError as exc:
        raise expired from exc
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not isinstance(sealed, dict) or not isinstance(sealed.get("p"), dict):
        raise expired
    bound = str(sealed.get("b", ""))
    if not (cookie and security.constant_time_equals(bound, security.sha256_hex(cookie)[:16])):
        raise expired
    return sealed["p"]


def session_cookie(tenant_id: str) -> str:
    return f"{SESSION_COOKIE_PREFIX}{tenant_id}"


def read_session(tenant_id: str | None) -> str | None:
    """The id of the browser's sign-in session with this tenant, if its cookie is ours."""
    if not tenant_id:
        return None
    try:
        claims = security.signed_loads(
            _secret(),
            "login-session",
            request.cookies.get(session_cookie(tenant_id), ""),
            current_app.config["LOGIN_SESSION_TTL"],
        )
    except security.SignedTokenError:
        return None
    if not isinstance(claims, dict) or claims.get("tid") != tenant_id:
        return None
    session_id = claims.get("sid")
    return session_id if isinstance(session_id, str) else None


def all_sessions() -> dict[str, str]:
    """Every sign-in session cookie of this browser: tenant id → session id."""
    found = {}
    for name in request.cookies:
        tenant_id = name.removeprefix(SESSION_COOKIE_PREFIX)
        if name.startswith(SESSION_COOKIE_PREFIX) and _TENANT.fullmatch(tenant_id):
            session_id = read_session(tenant_id)
            if session_id:
                found[tenant_id] = session_id
    return found


def keep_session(response: Response, tenant_id: str, session_id: str) -> None:
    value = security.signed_dumps(_secret(), "login-session", {"tid": tenant_id, "sid": session_id})
    _set_cookie(response, session_cookie(tenant_id), value, current_app.config["LOGIN_SESSION_TTL"])


def forget_session(response: Response, tenant_id: str) -> None:
    response.delete_cookie(
        session_cookie(tenant_id),
        path="/",
        secure=current_app.config["LOGIN_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )
