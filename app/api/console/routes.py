"""Signing in to the console and out of it, and its home page. The console is an OIDC
client of this Gatehouse: `/console/…` without a session goes to `/authorize` (edge.py),
and `/console/callback` exchanges the code through the token endpoint's own grant code
(no HTTP call to itself), checks the ID token and admits the member
(app.console.service.complete_sign_in)."""

from __future__ import annotations

from flask import Response, redirect, request

from app.api.auth import client_ip, public
from app.api.console import blp, cookies, page
from app.api.console.cookies import ConsoleCookie
from app.api.console.edge import (
    console_tenant,
    console_view,
    current,
    pending_tenant,
    session_tenant,
)
from app.api.hosted import browser
from app.console import service as console_service
from app.core import ratelimit, security
from app.core.errors import Forbidden, Invalid
from app.core.http import accepts_form


@blp.route("/sign-in", methods=["GET"])
@public
def choose_tenant() -> Response:
    """Ask which tenant's console to open (an instance with several tenants)"""
    return page("choose_tenant.html")


@blp.route("/callback", methods=["GET"])
@public(tenant_from=pending_tenant)
def callback() -> Response:
    """Finish the console's sign-in: check state, exchange the code, admit the member"""
    pending = cookies.read_pending()
    if pending is None:
        raise Invalid(
            "This sign-in took too long or was started in another browser. Open the "
            "console again to sign in.",
            code="console_signin_expired",
        )
    state = request.args.get("state", "")
    # The state is spent once: a replayed answer (a reload, a stolen URL) is refused.
    if not security.constant_time_equals(state, pending.state) or not ratelimit.claim_once(
        cookies.SIGNIN_PURPOSE, pending.state, cookies.SIGNIN_TTL
    ):
        raise Invalid(
            "This sign-in answer is not valid any more. Open the console again to sign in.",
            code="console_state_invalid",
        )
    code = request.args.get("code")
    if request.args.get("error") or not code:
        raise Forbidden("The sign-in did not complete.", code="console_signin_refused")
    signed_in = console_service.complete_sign_in(
        tenant_id=pending.tenant_id,
        code=code,
        code_verifier=pending.verifier,
        nonce=pending.nonce,
        ip=client_ip(),
        user_agent=request.user_agent.string,
    )
    response: Response = redirect(pending.next, code=303)  # type: ignore[assignment]
    kept = ConsoleCookie(pending.tenant_id, signed_in.session_id, signed_in.user_id)
    cookies.keep_session(response, kept)
    cookies.forget_pending(response)
    browser.rotate_csrf()  # nothing learnt of the old one before sign-in serves after it
    return response


@blp.route("/logout", methods=["POST"])
@accepts_form
@public(tenant_from=session_tenant)
def logout() -> Response:
    """Sign out: end the hosted sign-in session under the console, forget the cookie"""
    browser.check_csrf(request.form.get("csrf_token"))
    cookie = cookies.read_session()
    response = page("signed_out.html", tenant_id=cookie.tenant_id if cookie else None)
    if cookie is not None:
        console_service.sign_out(tenant_id=cookie.tenant_id, session_id=cookie.session_id)
        browser.forget_session(response, cookie.tenant_id)
    cookies.forget_session(response)
    return response


# "/console" (the app routes "/console/" as "/console": core.http.StripTrailingSlash).
@blp.route("", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def dashboard() -> Response:
    """The console's home page"""
    return page("dashboard.html", tenant_name=current().tenant_name)
