"""The browser side of the hosted pages: the CSRF cookie and its form token, the sign-in
session cookie (one per tenant), and signed hidden fields that carry a checked request
from one form to the next (the server keeps no state between the steps, but for the
nonces of single-use forms).

The cookies are Secure when LOGIN_COOKIE_SECURE says so (by default, when the issuer is
https), and then carry the `__Host-` prefix: the browser keeps them only if they are
Secure, for the whole host (Path=/) and no other (no Domain), so a sibling subdomain
cannot plant one. Over plain http a browser drops Secure cookies, which is why a form
that comes back without its cookie says so rather than "expired"."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Response, current_app, g, request
from flask_babel import gettext as _

from app.core import ratelimit, security
from app.core.errors import Forbidden, Invalid

CSRF_COOKIE = "gh_csrf"
SESSION_COOKIE_PREFIX = "gh_sso_"
HOST_PREFIX = "__Host-"
# How long a page's form may be filled in before it must be reloaded.
FORM_TTL = 30 * 60
# The second factor follows the password: its form is short-lived.
SECOND_FACTOR_TTL = 5 * 60
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_TENANT = re.compile(r"[0-9a-f]{1,32}")


def _secret() -> str:
    return str(current_app.config["SECRET_KEY"])


def _secure() -> bool:
    return bool(current_app.config["LOGIN_COOKIE_SECURE"])


def cookie_name(name: str) -> str:
    """A cookie's name: `__Host-` prefixed when the cookies are Secure."""
    return f"{HOST_PREFIX}{name}" if _secure() else name


def csrf_cookie() -> str:
    return cookie_name(CSRF_COOKIE)


def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    """Set an HttpOnly, SameSite=Lax cookie, Secure as LOGIN_COOKIE_SECURE says (`name`
    as cookie_name() gives it)."""
    # Path=/ and no Domain: what the __Host- prefix requires.
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=_secure(), httponly=True, samesite="Lax"
    )


def _csrf_value() -> str:
    """This browser's CSRF secret: the cookie's, or a new one set on the response."""
    value = g.get("csrf_value") or request.cookies.get(csrf_cookie(), "")
    if not _TOKEN.fullmatch(value):
        value = security.random_token(32)
        g.csrf_new = True
    g.csrf_value = value
    return value


def rotate_csrf() -> None:
    """A new CSRF secret for this browser (set on the response): at the end of a sign-in,
    so nothing learnt of the old one before it serves after it."""
    g.csrf_value = security.random_token(32)
    g.csrf_new = True


def _posted_cookie() -> str:
    """The CSRF cookie a form post came with; Forbidden `cookies_missing` without one."""
    cookie = request.cookies.get(csrf_cookie(), "")
    if not cookie:
        raise Forbidden(
            _(
                "Your browser did not send this site's cookies. Sign-in needs cookies: allow "
                "them for this site and try again. If the site is served over http, its "
                "cookies must not be Secure (the operator serves it over https, or sets "
                "LOGIN_COOKIE_SECURE=false)."
            ),
            code="cookies_missing",
        )
    return cookie


def csrf_token() -> str:
    """The token a form carries: the CSRF cookie's value, signed (double submit)."""
    return security.signed_dumps(_secret(), "csrf", _csrf_value())


def check_csrf(token: str | None) -> None:
    """Forbidden `csrf_failed` unless the form's token signs this browser's CSRF cookie
    (`cookies_missing` when the browser sent none)."""
    cookie = _posted_cookie()
    try:
        signed = security.signed_loads(_secret(), "csrf", token or "", FORM_TTL)
    except security.SignedTokenError:
        signed = None
    if not (isinstance(signed, str) and cookie and security.constant_time_equals(signed, cookie)):
        raise Forbidden(
            _("This form has expired or did not come from this page. Please try again."),
            code="csrf_failed",
        )


def set_csrf_cookie(response: Response) -> None:
    if g.get("csrf_new"):
        set_cookie(response, csrf_cookie(), g.csrf_value, None)


def finish_page(response: Response, headers: Mapping[str, str]) -> Response:
    """Every page's last step (the hosted pages', the console's): the CSRF cookie when it
    is new, and the page's security headers unless the view set its own."""
    set_csrf_cookie(response)
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    return response


def seal(purpose: str, payload: dict[str, Any], *, once: bool = False) -> str:
    """A hidden-field value that carries `payload` to the next step, tamper-proof and
    bound to this browser's CSRF secret (so it is useless in another browser); `once`
    adds a nonce that `unseal(..., once=True)` accepts a single time."""
    sealed = {"p": payload, "b": security.sha256_hex(_csrf_value())[:16]}
    if once:
        sealed["n"] = security.random_token(16)
    return security.signed_dumps(_secret(), purpose, sealed)


def _expired() -> Invalid:
    # Built only when raised: a text translated early would fix the page's language before
    # the route learns the request's ui_locales.
    return Invalid(
        _("This sign-in took too long or was started elsewhere. Go back to the app and try again."),
        code="form_expired",
    )


def unseal(
    purpose: str, value: str | None, max_age: int = FORM_TTL, *, once: bool = False
) -> dict[str, Any]:
    """The payload of a sealed field from this browser; Invalid `form_expired` otherwise
    (also for a single-use one already submitted), Forbidden `cookies_missing` when the
    browser sent no cookie."""
    cookie = _posted_cookie()
    try:
        sealed = security.signed_loads(_secret(), purpose, value or "", max_age)
    except security.SignedTokenError as exc:
        raise _expired() from exc
    if not isinstance(sealed, dict) or not isinstance(sealed.get("p"), dict):
        raise _expired()
    bound = str(sealed.get("b", ""))
    if not security.constant_time_equals(bound, security.sha256_hex(cookie)[:16]):
        raise _expired()
    if once:
        nonce = sealed.get("n")
        if not (isinstance(nonce, str) and ratelimit.claim_once(purpose, nonce, max_age)):
            raise Invalid(
                _("This form was already submitted. Go back to the app and sign in again."),
                code="form_used",
            )
    return sealed["p"]


def session_cookie(tenant_id: str) -> str:
    return cookie_name(f"{SESSION_COOKIE_PREFIX}{tenant_id}")


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
    prefix = cookie_name(SESSION_COOKIE_PREFIX)
    for name in request.cookies:
        tenant_id = name.removeprefix(prefix)
        if name.startswith(prefix) and _TENANT.fullmatch(tenant_id):
            session_id = read_session(tenant_id)
            if session_id:
                found[tenant_id] = session_id
    return found


def keep_session(response: Response, tenant_id: str, session_id: str) -> None:
    value = security.signed_dumps(_secret(), "login-session", {"tid": tenant_id, "sid": session_id})
    set_cookie(response, session_cookie(tenant_id), value, current_app.config["LOGIN_SESSION_TTL"])


def forget_cookie(response: Response, name: str) -> None:
    """Delete a cookie set by set_cookie (`name` as cookie_name() gives it)."""
    response.delete_cookie(name, path="/", secure=_secure(), httponly=True, samesite="Lax")


def forget_session(response: Response, tenant_id: str) -> None:
    forget_cookie(response, session_cookie(tenant_id))


FEDERATION_COOKIE = "gh_fed"


def federation_cookie() -> str:
    return cookie_name(FEDERATION_COOKIE)


def keep_federation(response: Response, pending: str, max_age: int) -> None:
    """Keep a sign-in pending at another provider (app.federation's sealed value): Lax,
    so the provider's redirect back (a top-level GET) brings it."""
    set_cookie(response, federation_cookie(), pending, max_age)


def read_federation() -> str | None:
    return request.cookies.get(federation_cookie()) or None


def forget_federation(response: Response) -> None:
    forget_cookie(response, federation_cookie())
