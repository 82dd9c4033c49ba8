"""The console's two cookies, signed with SECRET_KEY, HttpOnly, SameSite=Lax and Secure as
the hosted pages' are (hosted.browser): the sign-in in progress (state, nonce and PKCE
verifier; its state is spent once at the callback) and the console session (tenant,
hosted sign-in session, user). Neither is trusted beyond naming: every request checks the
sign-in session and the role again (app.console.service.current_user)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Response, current_app, request

from app.api.hosted import browser
from app.core import security

SESSION_COOKIE = "gh_console"
SIGNIN_COOKIE = "gh_console_signin"
SESSION_PURPOSE = "console-session"
SIGNIN_PURPOSE = "console-sign-in"
# How long the hosted login may take before the console's callback refuses it.
SIGNIN_TTL = 15 * 60
TENANT = re.compile(r"[0-9a-f]{1,32}")
HOME = "/console"


def _secret() -> str:
    return str(current_app.config["SECRET_KEY"])


def _load(name: str, purpose: str, max_age: int) -> dict[str, str] | None:
    try:
        payload = security.signed_loads(
            _secret(), purpose, request.cookies.get(browser.cookie_name(name), ""), max_age
        )
    except security.SignedTokenError:
        return None
    if not isinstance(payload, dict) or not all(isinstance(v, str) for v in payload.values()):
        return None
    return payload


@dataclass(frozen=True)
class ConsoleCookie:
    """Whom the browser's console session names (checked again on every request)."""

    tenant_id: str
    session_id: str
    user_id: str


def read_session() -> ConsoleCookie | None:
    payload = _load(SESSION_COOKIE, SESSION_PURPOSE, current_app.config["LOGIN_SESSION_TTL"])
    if payload is None or not TENANT.fullmatch(payload.get("tid", "")):
        return None
    return ConsoleCookie(payload["tid"], payload.get("sid", ""), payload.get("uid", ""))


def keep_session(response: Response, kept: ConsoleCookie) -> None:
    value = security.signed_dumps(
        _secret(),
        SESSION_PURPOSE,
        {"tid": kept.tenant_id, "sid": kept.session_id, "uid": kept.user_id},
    )
    max_age = current_app.config["LOGIN_SESSION_TTL"]
    browser.set_cookie(response, browser.cookie_name(SESSION_COOKIE), value, max_age)


def forget_session(response: Response) -> None:
    browser.forget_cookie(response, browser.cookie_name(SESSION_COOKIE))


def _is_console_path(path: str) -> bool:
    """Whether the page to return to after sign-in is the console's (never elsewhere)."""
    return path == HOME or path.startswith((HOME + "/", HOME + "?"))


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in the console sent to the hosted login: what the callback must match."""

    tenant_id: str
    state: str
    nonce: str
    verifier: str
    next: str


def start_sign_in(response: Response, tenant_id: str, next_path: str) -> PendingSignIn:
    """A new pending sign-in, kept in its cookie on `response`."""
    pending = PendingSignIn(
        tenant_id=tenant_id,
        state=security.random_token(24),
        nonce=security.random_token(24),
        verifier=security.random_token(48),
        next=next_path if _is_console_path(next_path) else HOME,
    )
    value = security.signed_dumps(_secret(), SIGNIN_PURPOSE, pending.__dict__)
    browser.set_cookie(response, browser.cookie_name(SIGNIN_COOKIE), value, SIGNIN_TTL)
    return pending


def read_pending() -> PendingSignIn | None:
    payload = _load(SIGNIN_COOKIE, SIGNIN_PURPOSE, SIGNIN_TTL)
    if payload is None or set(payload) != set(PendingSignIn.__dataclass_fields__):
        return None
    pending = PendingSignIn(**payload)
    return pending if TENANT.fullmatch(pending.tenant_id) else None


def forget_pending(response: Response) -> None:
    browser.forget_cookie(response, browser.cookie_name(SIGNIN_COOKIE))
