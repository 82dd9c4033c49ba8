"""Routes of the hosted pages: the login page that answers authorization requests, the
second-factor step, RP-initiated logout, and the email-verification link."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, g, redirect, request

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, page, show_form_on_error
from app.applications import authorization, login
from app.applications import logout as logout_service
from app.applications.authorization import AuthorizationRequest, with_query
from app.core import ratelimit
from app.core.errors import Invalid
from app.core.http import accepts_form
from app.credentials import verification

AUTHORIZE = "authorize-request"
SECOND_FACTOR = "second-factor"
LOGOUT = "logout-request"


class LoginForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))


class CodeForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=16))


def _form(schema: ma.Schema, message: str) -> dict[str, Any]:
    try:
        return schema.load(request.form.to_dict())
    except ma.ValidationError as exc:
        raise Invalid(message, code="invalid_form", fields=exc.normalized_messages()) from exc


def _application_name(authz: AuthorizationRequest) -> str:
    return authorization.application_of(authz).name


def _login_page(authz: AuthorizationRequest, *, username: str = "") -> Response:
    context = {
        "app_name": _application_name(authz),
        "authz": browser.seal(AUTHORIZE, authz.as_dict()),
        "username": username,
    }
    return page("login.html", **context)


def _to_client(outcome: login.Outcome, authz: AuthorizationRequest, status: int) -> Response:
    """Send the browser back to the client with its code, keeping the sign-in session (a
    session the browser had before with this tenant ends: its cookie is replaced)."""
    assert outcome.location is not None and outcome.session_id is not None
    replaced = browser.read_session(authz.tenant_id)
    if replaced is not None and replaced != outcome.session_id:
        login.sign_out(tenant_id=authz.tenant_id, session_id=replaced)
    response = redirect(outcome.location, code=status)
    browser.keep_session(response, authz.tenant_id, outcome.session_id)  # type: ignore[arg-type]
    return response  # type: ignore[return-value]


@blp.route("/authorize", methods=["GET"])
@public
def authorize() -> Response:
    """Answer an authorization request: at once when signed in, else with the login form"""
    args = request.args
    repeated = [name for name in args if len(args.getlist(name)) > 1]
    authz = authorization.parse_request(args.to_dict(), repeated=repeated)
    g.authz = authz  # from here on, a failure is the client's to learn
    session_id = browser.read_session(authz.tenant_id)
    outcome = login.resume(request=authz, session_id=session_id)
    if outcome is not None:
        return _to_client(outcome, authz, 302)
    if "none" in authz.prompt:
        raise authorization.login_required(authz, "The user is not signed in")
    return _login_page(authz, username=authz.login_hint or "")


def _limit_sign_in(tenant_id: str, *identifiers: str) -> str:
    """The password grant's limits: per client IP, and per account named (with the IP)."""
    ip = client_ip() or "-"
    ratelimit.check("RATELIMIT_SIGNIN_PER_IP", ip)
    ratelimit.check_each(
        "RATELIMIT_SIGNIN_PER_ACCOUNT", tenant_id, ratelimit.login_keys(*identifiers), ip
    )
    return ip


@blp.route("/authorize", methods=["POST"])
@accepts_form
@public
def authorize_submit() -> Response:
    """Check the login form's username (or email) and password"""
    sealed = request.form.get("authz")
    authz = AuthorizationRequest.from_dict(browser.unseal(AUTHORIZE, sealed))
    g.authz = authz
    username = request.form.get("username", "")[:255]
    show_form_on_error(
        "login.html", app_name=_application_name(authz), authz=sealed, username=username
    )
    browser.check_csrf(request.form.get("csrf_token"))
    if "cancel" in request.form:
        raise authorization.access_denied(authz)
    form = _form(LoginForm(), "Enter your username or email address and your password.")
    ip = _limit_sign_in(authz.tenant_id, form["username"])
    outcome = login.password_step(
        request=authz, login=form["username"], password=form["password"], ip=ip
    )
    if outcome.pending_user is not None:
        pending = {"authz": authz.as_dict(), "uid": outcome.pending_user}
        context = {
            "app_name": _application_name(authz),
            "pending": browser.seal(SECOND_FACTOR, pending),
        }
        return page("second_factor.html", **context)
    return _to_client(outcome, authz, 303)


@blp.route("/authorize/second-factor", methods=["POST"])
@accepts_form
@public
def second_factor_submit() -> Response:
    """Check the one-time code of the user who just gave a password"""
    sealed = request.form.get("pending")
    pending = browser.unseal(SECOND_FACTOR, sealed, browser.SECOND_FACTOR_TTL)
    authz = AuthorizationRequest.from_dict(pending["authz"])
    g.authz = authz
    show_form_on_error("second_factor.html", app_name=_application_name(authz), pending=sealed)
    browser.check_csrf(request.form.get("csrf_token"))
    form = _form(CodeForm(), "Enter the code your authenticator app shows.")
    ip = _limit_sign_in(authz.tenant_id, pending["uid"])
    outcome = login.second_factor_step(
        request=authz, user_id=pending["uid"], code=form["code"], ip=ip
    )
    return _to_client(outcome, authz, 303)


def _signed_out(target: logout_service.LogoutRequest, sessions: dict[str, str]) -> Response:
    """End the given sign-in sessions and leave for the app's page, or say so."""
    for tenant_id, session_id in sessions.items():
        login.sign_out(tenant_id=tenant_id, session_id=session_id)
    if target.redirect_uri:
        params = {"state": target.state} if target.state is not None else {}
        response: Response = redirect(with_query(target.redirect_uri, params), code=303)  # type: ignore[assignment]
    else:
        response = page("signed_out.html")
    for tenant_id in sessions:
        browser.forget_session(response, tenant_id)
    return response


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
        login.signed_in_user(tenant_id=tenant_id, session_id=session_id) == target.hinted_user
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


@blp.route("/verify-email", methods=["GET"])
@public
def verify_email() -> Response:
    """Mark an email address verified with the link mailed to it"""
    token = request.args.get("token", "")
    if not token or len(token) > 2048:
        raise Invalid("The link is invalid, used or expired", code="verification_token_invalid")
    verification.confirm(token=token, ip=client_ip())
    return page("email_verified.html")
