"""The console pages' edge: which tenant a request serves, and `@console_view(action=…)`,
which admits the request's member or sends the browser to sign in.

A console view is decorated `@public(tenant_from=console_tenant)` (one transaction, run
in the tenant's scope: app.api.auth) and, under it, `@console_view(action=…)`: the hosted
sign-in session and the role are read fresh on every request, a POST must carry the
form's CSRF token, and an action the role may not take is refused with a 403 page, on
the server, whatever the page showed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from flask import Response, g, redirect, request, url_for

from app.api.auth import client_ip
from app.api.console import cookies
from app.api.hosted import browser
from app.console import service as console_service
from app.console.service import ConsoleUser
from app.core import security
from app.core.errors import Forbidden
from app.core.tenancy import Principal
from app.tenants import service as tenant_service

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Console:
    """What a console view and its page know: the member (read this request), the
    tenant's name, and the audit actor the services record."""

    user: ConsoleUser
    tenant_name: str
    actor: Principal

    def may(self, action: str) -> bool:
        return console_service.may(self.user.role, action)


def console_tenant() -> str | None:
    """The tenant a console request serves: `?tenant=ID`, else the console session's, else
    the instance's only tenant; None when none of these names one (a form asks)."""
    named = request.args.get("tenant")
    cookie = cookies.read_session()
    if named:
        tenant_id = named if cookies.TENANT.fullmatch(named) else None
    elif cookie is not None:
        tenant_id = cookie.tenant_id
    else:
        found = tenant_service.list_tenants(limit=2).items
        tenant_id = found[0].id if len(found) == 1 else None
    g.console_tenant = tenant_id
    return tenant_id


def pending_tenant() -> str | None:
    """The tenant of the sign-in this browser has pending (the callback's)."""
    pending = cookies.read_pending()
    return pending.tenant_id if pending is not None else None


def session_tenant() -> str | None:
    """The tenant of this browser's console session (sign-out's)."""
    cookie = cookies.read_session()
    return cookie.tenant_id if cookie is not None else None


def current() -> Console:
    """The console of this request (set by @console_view; a programming error elsewhere)."""
    console = g.get("console")
    if console is None:
        raise RuntimeError("the view is not decorated with @console_view")
    return cast(Console, console)


def sign_in_redirect(tenant_id: str) -> Response:
    """Send the browser to the hosted login as the tenant's console client (code, PKCE
    S256, state and nonce kept in the sign-in cookie); back here at the callback."""
    client = console_service.ensure_console_application(tenant_id=tenant_id)
    back = request.full_path if request.method == "GET" else cookies.HOME
    response: Response = redirect(cookies.HOME, code=302)  # type: ignore[assignment]
    pending = cookies.start_sign_in(response, tenant_id, back.rstrip("?"))
    query = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": console_service.callback_uri(),
        "scope": " ".join(console_service.CONSOLE_SCOPES),
        "state": pending.state,
        "nonce": pending.nonce,
        "code_challenge": security.pkce_s256(pending.verifier),
        "code_challenge_method": "S256",
    }
    if tenant_service.get_tenant(tenant_id).console_require_mfa:
        # A sign-in session made without a second factor would be answered at once and
        # refused again: ask for a fresh sign-in, which asks for the second factor.
        query["prompt"] = "login"
    response.location = f"{url_for('hosted.authorize')}?{urlencode(query)}"
    cookies.forget_session(response)
    return response


def console_view(*, action: str) -> Callable[[F], F]:
    """Admit the request's console member for `action` ("read", "act", "admin"), or send
    the browser to sign in (no tenant yet: to the form that asks for it)."""
    if action not in console_service.ACTIONS:
        raise ValueError(f"unknown console action {action!r}")

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tenant_id = g.get("console_tenant")
            if tenant_id is None:
                return redirect(url_for("console.choose_tenant"), code=303)
            cookie = cookies.read_session()
            user = None
            if cookie is not None and cookie.tenant_id == tenant_id:
                user = console_service.current_user(
                    tenant_id=tenant_id, session_id=cookie.session_id, user_id=cookie.user_id
                )
            if user is None:
                return sign_in_redirect(tenant_id)
            actor = Principal(
                tenant_id=tenant_id,
                user_id=user.user_id,
                kind="user",
                credential_id=user.session_id,
                ip=client_ip(),
            )
            tenant_name = tenant_service.get_tenant(tenant_id).name
            g.console = Console(user=user, tenant_name=tenant_name, actor=actor)
            if request.method == "POST":
                browser.check_csrf(request.form.get("csrf_token"))
            if not console_service.may(user.role, action):
                raise Forbidden(
                    "Your console role does not allow this action", code="console_action_refused"
                )
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
