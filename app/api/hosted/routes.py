"""Routes of the hosted pages: the login page that answers authorization requests, the
second-factor step (and the notice of failed codes that may follow it), and RP-initiated
logout (sign-up, the email-verification link and the password reset: signup_routes). The
sign-in's rules (limits, budget, audit) are the sign-in flow's, reached through
applications.login."""

from __future__ import annotations

from typing import Any

from flask import Response, g, redirect, request

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, mfa_pages, page, show_form_on_error
from app.api.hosted.edge import (
    authorization_request,
    in_page_tenant,
    in_session_tenant,
    page_authz,
    page_origin,
    sealed_request,
    sealed_step,
)
from app.api.hosted.forms import CodeForm, LoginForm, load_form
from app.applications import authorization, login
from app.applications import logout as logout_service
from app.applications.authorization import AuthorizationRequest, with_query
from app.core.http import accepts_form
from app.federation import service as federation_service

AUTHORIZE = "authorize-request"
SECOND_FACTOR = mfa_pages.SECOND_FACTOR
SIGNED_IN = "signed-in"
LOGOUT = "logout-request"


def application_name(authz: AuthorizationRequest) -> str:
    return authorization.application_of(authz).name


def login_context(
    authz: AuthorizationRequest, *, sealed: str | None = None, username: str = ""
) -> dict[str, Any]:
    """The login page's context: the app, the sealed request (`sealed`, else sealed now),
    the username to prefill and a button per connection serving the app (also when the
    page is shown again after an error)."""
    return {
        "app_name": application_name(authz),
        "authz": sealed or browser.seal(AUTHORIZE, authz.as_dict()),
        "username": username,
        "connections": [
            {"name": row.name, "label": row.display_name or row.name}
            for row in federation_service.enabled_connections(authz.client_id)
        ],
    }


def _login_page(authz: AuthorizationRequest, *, username: str = "") -> Response:
    return page("login.html", **login_context(authz, username=username))


def keep_sign_in(response: Response, tenant_id: str, session_id: str) -> None:
    """Keep a new sign-in session in this browser's cookie (a session the browser had
    before with this tenant ends: its cookie is replaced). Every page that signs in
    (login, account, sign-up link, reset, passkey) ends with it, in the scope of the
    tenant it signed in to (its edge's)."""
    replaced = browser.read_session(tenant_id)
    if replaced is not None and replaced != session_id:
        login.sign_out(tenant_id=tenant_id, session_id=replaced)
    browser.keep_session(response, tenant_id, session_id)


def _to_client(outcome: login.Outcome, authz: AuthorizationRequest, status: int) -> Response:
    """Send the browser back to the client with its code, keeping the sign-in session."""
    assert outcome.location is not None and outcome.session_id is not None
    response: Response = redirect(outcome.location, code=status)  # type: ignore[assignment]
    keep_sign_in(response, authz.tenant_id, outcome.session_id)
    return response


def complete_sign_in(outcome: login.Outcome, authz: AuthorizationRequest) -> Response:
    """A sign-in completed: a new CSRF secret for this browser, then on to the client, or
    first to the page that shows the new recovery codes (MFA enrolled in place), or that
    says how many codes failed since the previous sign-in."""
    browser.rotate_csrf()
    if outcome.location is not None:
        return _to_client(outcome, authz, 303)
    assert outcome.session_id is not None
    context = {
        "app_name": application_name(authz),
        "failures": outcome.second_factor_failures,
        "signed_in": browser.seal(SIGNED_IN, {"authz": authz.as_dict(), "sid": outcome.session_id}),
    }
    if outcome.recovery_codes:
        context["recovery_codes"] = outcome.recovery_codes
        response = page("recovery_codes.html", **context)
    else:
        response = page("second_factor_notice.html", **context)
    keep_sign_in(response, authz.tenant_id, outcome.session_id)
    return response


def second_factor_page(
    authz: AuthorizationRequest,
    user_id: str,
    generation: int,
    kinds: list[str] | tuple[str, ...],
    method: str = mfa_pages.CODE,
    pending: str | None = None,
    first: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The second-factor page's context (a fresh single-use sealed step unless given,
    carrying `first`: mfa_pages.first_factor())."""
    if pending is None:
        pending = mfa_pages.seal_second_factor(authz, user_id, generation, kinds, first)
    return mfa_pages.second_factor_context(
        app_name=application_name(authz), pending=pending, kinds=kinds, method=method
    )


@blp.route("/authorize", methods=["GET"])
@public
@in_page_tenant(from_=authorization_request)
def authorize() -> Response:
    """Answer an authorization request: at once when signed in, else with the login form"""
    authz = page_authz()
    g.authz = authz  # from here on, a failure is the client's to learn
    session_id = browser.read_session(authz.tenant_id)
    outcome = login.resume(request=authz, session_id=session_id)
    if outcome is not None:
        return _to_client(outcome, authz, 302)
    if "none" in authz.prompt:
        raise authorization.login_required(authz, "The user is not signed in")
    from app.api.hosted import federation_routes  # imports this module

    if "connection" in request.args:  # Auth0's parameter: straight to that provider
        return federation_routes.go_upstream(authz, request.args["connection"])
    return _login_page(authz, username=authz.login_hint or "")


@blp.route("/authorize", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_request(AUTHORIZE, "authz"))
def authorize_submit() -> Response:
    """Check the login form's username (or email) and password"""
    sealed = request.form.get("authz")
    authz = page_authz()
    g.authz = authz
    username = request.form.get("username", "")[:255]
    show_form_on_error("login.html", **login_context(authz, sealed=sealed, username=username))
    browser.check_csrf(request.form.get("csrf_token"))
    if "cancel" in request.form:
        raise authorization.access_denied(authz)
    form = load_form(LoginForm(), "Enter your username or email address and your password.")
    from app.api.hosted import passkey_routes  # imports this module

    outcome = login.password_step(
        request=authz,
        login=form["username"],
        password=form["password"],
        ip=client_ip(),
        user_agent=request.user_agent.string,
        offer_passkey=passkey_routes.may_offer(),
    )
    if outcome.enrolment is not None:
        assert outcome.pending_user is not None
        pending = mfa_pages.seal_enrolment(authz, outcome.pending_user, outcome.pending_generation)
        context = mfa_pages.enrolment_context(
            app_name=application_name(authz),
            pending=pending,
            secret=outcome.enrolment.secret,
            uri=outcome.enrolment.uri,
        )
        return page("mfa_enrol.html", **context)
    if outcome.pending_user is not None:
        context = second_factor_page(
            authz, outcome.pending_user, outcome.pending_generation, outcome.pending_kinds
        )
        return page("second_factor.html", **context)
    if outcome.offer_passkey:
        return passkey_routes.offer_page(outcome, authz)
    return complete_sign_in(outcome, authz)


@blp.route("/authorize/second-factor", methods=["POST"])
@accepts_form
@public
@in_page_tenant(
    from_=sealed_step(SECOND_FACTOR, "pending", max_age=browser.SECOND_FACTOR_TTL, once=True)
)
def second_factor_submit() -> Response:
    """Check the one-time code of the user who just gave a password"""
    pending, authz = page_origin().payload, page_authz()
    g.authz = authz
    user_id, generation = str(pending["uid"]), int(pending.get("gen", -1))
    kinds = [str(kind) for kind in pending.get("kinds") or ["totp"]]
    method = mfa_pages.RECOVERY if request.form.get("method") == "recovery" else mfa_pages.CODE
    # The submitted form is used up: an error shows a fresh one.
    first = mfa_pages.carried(pending)
    show_form_on_error(
        "second_factor.html",
        **second_factor_page(authz, user_id, generation, kinds, method, first=first),
    )
    browser.check_csrf(request.form.get("csrf_token"))
    form = load_form(CodeForm(), "Enter the code your authenticator app shows.")
    outcome = login.second_factor_step(
        request=authz,
        user_id=user_id,
        generation=generation,
        code=form["code"],
        ip=client_ip(),
        user_agent=request.user_agent.string,
        **mfa_pages.step_first_factor(pending),
    )
    return complete_sign_in(outcome, authz)


@blp.route("/authorize/continue", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_step(SIGNED_IN, "signed_in"))
def continue_sign_in() -> Response:
    """Go on to the app after the notice of failed codes"""
    signed_in, authz = page_origin().payload, page_authz()
    g.authz = authz
    browser.check_csrf(request.form.get("csrf_token"))
    outcome = login.resume(request=authz, session_id=str(signed_in["sid"]), just_signed_in=True)
    assert outcome is not None  # resume raises instead when the session ended
    return _to_client(outcome, authz, 303)


def _signed_out(target: logout_service.LogoutRequest, sessions: dict[str, str]) -> Response:
    """End the given sign-in sessions and leave for the app's page, or say so."""
    for tenant_id, session_id in sessions.items():
        in_session_tenant(tenant_id, session_id, login.sign_out)
    if target.redirect_uri:
        params = {"state": target.state} if target.state is not None else {}
        response: Response = redirect(with_query(target.redirect_uri, params), code=303)  # type: ignore[assignment]
    else:
        response = page("signed_out.html")
    for tenant_id in sessions:
        browser.forget_session(response, tenant_id)
    return response


def _signed_in_user(tenant_id: str, session_id: str) -> str | None:
    return in_session_tenant(tenant_id, session_id, login.signed_in_user)


def _sessions_for(target: logout_service.LogoutRequest) -> dict[str, str]:
    if target.tenant_id is None:
        return browser.all_sessions()
    session_id = browser.read_session(target.tenant_id)
    return {target.tenant_id: session_id} if session_id else {}


@blp.route("/logout", methods=["GET"])
@public
def logout() -> Response:
    """End the browser's sign-in session (OpenID Connect RP-Initiated Logout)"""
    target = logout_service.parse_logout(request.args.to_dict())
    sessions = _sessions_for(target)
    hinted = target.hinted_user is not None and all(
        _signed_in_user(tenant_id, session_id) == target.hinted_user
        for tenant_id, session_id in sessions.items()
    )
    if not sessions or hinted:
        return _signed_out(target, sessions)
    # Without a hint naming the signed-in user, any page could sign the user out: ask.
    return page("logout.html", request_seal=browser.seal(LOGOUT, target.as_dict()))


@blp.route("/logout", methods=["POST"])
@accepts_form
@public
def logout_confirm() -> Response:
    """Sign out after the user confirmed it"""
    target = logout_service.LogoutRequest.from_dict(
        browser.unseal(LOGOUT, request.form.get("request"))
    )
    browser.check_csrf(request.form.get("csrf_token"))
    return _signed_out(target, _sessions_for(target))
