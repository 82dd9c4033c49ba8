"""Who the account pages serve, when it is not settled yet: without a live sign-in
session with the page's tenant, a sign-in for it (the login page's steps, ending on the
account page), or which tenant to pick; before a credential change with a sign-in older
than REAUTH_MAX_AGE_SECONDS, "confirm it's you" (the password again)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Response, current_app, redirect, request, url_for
from flask_babel import gettext as _
from werkzeug.exceptions import MethodNotAllowed, NotFound

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, page, show_form_on_error
from app.api.hosted.account_session import (
    Account,
    AccountSignInRequired,
    ReauthenticationRequired,
    account_page,
    require_account,
)
from app.api.hosted.edge import in_page_tenant, page_origin, sealed_account_step
from app.api.hosted.forms import CodeForm, LoginForm, PasswordForm, load_form
from app.api.hosted.routes import keep_sign_in
from app.applications import account as account_service
from app.applications import login
from app.core.errors import Invalid
from app.core.http import accepts_form
from app.tenants import service as tenant_service

ACCOUNT_LOGIN = "account-login"
ACCOUNT_SECOND_FACTOR = "account-second-factor"
REAUTHENTICATE = "account-reauth"


def account_url(tenant_id: str, endpoint: str = "hosted.account", **params: str) -> str:
    return url_for(endpoint, tenant=tenant_id, **params)


def safe_next(target: Any, tenant_id: str) -> str:
    """Where to go after a sign-in or a reauthentication: a path of the account pages,
    else the account page."""
    if isinstance(target, str) and target.startswith("/account") and "//" not in target:
        return target
    return account_url(tenant_id)


def tenant_name(tenant_id: str) -> str:
    tenant = tenant_service.get_tenant(tenant_id)
    return str((tenant.branding or {}).get("display_name") or tenant.name)


# ---- signing in for the account page ----------------------------------------------


def _login_page(tenant_id: str, target: str, *, username: str = "", status: int = 200) -> Response:
    sealed = browser.seal(ACCOUNT_LOGIN, {"tid": tenant_id, "next": target})
    return page(
        "account_login.html",
        status,
        tenant_name=tenant_name(tenant_id),
        request_seal=sealed,
        username=username,
    )


@blp.errorhandler(AccountSignInRequired)
def sign_in_required(exc: AccountSignInRequired) -> Response:
    """Without a live sign-in session: the sign-in for the page's tenant, or which
    tenant to pick, or where to sign in."""
    if exc.tenant_id is not None:
        if tenant_service.find_tenant(exc.tenant_id) is None:
            return page(
                "error.html",
                404,
                message=_("This account page does not exist."),
                code="tenant_not_found",
            )
        target = request.full_path.rstrip("?") if request.method == "GET" else ""
        return _login_page(exc.tenant_id, safe_next(target, exc.tenant_id))
    choices = [
        (tenant_id, tenant_name(tenant_id))
        for tenant_id in browser.all_sessions()
        if tenant_service.find_tenant(tenant_id) is not None
    ]
    return page("account_choose.html", choices=choices)


def _signed_in(outcome: login.Outcome, tenant_id: str, target: str) -> Response:
    browser.rotate_csrf()
    assert outcome.session_id is not None
    if outcome.second_factor_failures:
        response = page(
            "account_notice.html", failures=outcome.second_factor_failures, next_url=target
        )
    else:
        response = redirect(target, code=303)  # type: ignore[assignment]
    keep_sign_in(response, tenant_id, outcome.session_id)
    return response


def _second_factor_seal(pending: dict[str, Any]) -> str:
    return browser.seal(ACCOUNT_SECOND_FACTOR, pending, once=True)


@blp.route("/account/login", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_account_step(ACCOUNT_LOGIN, "request"))
def account_login() -> Response:
    """Check the username (or email) and password of a sign-in for the account page"""
    sealed = request.form.get("request")
    pending = page_origin().payload
    tenant_id, target = str(pending["tid"]), safe_next(pending.get("next"), str(pending["tid"]))
    username = request.form.get("username", "")[:255]
    show_form_on_error(
        "account_login.html",
        tenant_name=tenant_name(tenant_id),
        request_seal=sealed,
        username=username,
    )
    browser.check_csrf(request.form.get("csrf_token"))
    form = load_form(LoginForm(), _("Enter your username or email address and your password."))
    outcome = login.password_step(
        request=None,
        tenant_id=tenant_id,
        login=form["username"],
        password=form["password"],
        ip=client_ip(),
        user_agent=request.user_agent.string,
    )
    if outcome.pending_user is not None:
        step = {
            "tid": tenant_id,
            "next": target,
            "uid": outcome.pending_user,
            "gen": outcome.pending_generation,
        }
        return page("account_second_factor.html", pending=_second_factor_seal(step))
    return _signed_in(outcome, tenant_id, target)


@blp.route("/account/login/second-factor", methods=["POST"])
@accepts_form
@public
@in_page_tenant(
    from_=sealed_account_step(
        ACCOUNT_SECOND_FACTOR, "pending", max_age=browser.SECOND_FACTOR_TTL, once=True
    )
)
def account_second_factor() -> Response:
    """Check the one-time code of a sign-in for the account page"""
    step = page_origin().payload
    tenant_id, target = str(step["tid"]), safe_next(step.get("next"), str(step["tid"]))
    # The submitted form is used up: an error shows a fresh one.
    show_form_on_error("account_second_factor.html", pending=_second_factor_seal(step))
    browser.check_csrf(request.form.get("csrf_token"))
    form = load_form(CodeForm(), _("Enter the code your authenticator app shows."))
    outcome = login.second_factor_step(
        request=None,
        tenant_id=tenant_id,
        user_id=str(step["uid"]),
        generation=int(step.get("gen", -1)),
        code=form["code"],
        ip=client_ip(),
        user_agent=request.user_agent.string,
    )
    return _signed_in(outcome, tenant_id, target)


# ---- confirming it is the user, before a credential change ----------------------------


def _return_path(tenant_id: str) -> str:
    """Where the user was going: this page for a GET; for a form post, the page of the
    same path if there is one (the form is filled in again), else the account page."""
    if request.method == "GET":
        return safe_next(request.full_path.rstrip("?"), tenant_id)
    adapter = current_app.url_map.bind("localhost")
    try:
        adapter.match(request.path, method="GET")
    except (NotFound, MethodNotAllowed):
        return account_url(tenant_id)
    return safe_next(f"{request.path}?{urlencode({'tenant': tenant_id})}", tenant_id)


def _reauth_context(account: Account, target: str) -> dict[str, Any]:
    user = account_service.signed_in_user(
        tenant_id=account.tenant_id, session_id=account.session_id
    )
    who = user.username or user.email or user.id
    sealed = browser.seal(
        REAUTHENTICATE, {"tid": account.tenant_id, "sid": account.session_id, "next": target}
    )
    return {
        "who": who,
        "request_seal": sealed,
        "tenant_id": account.tenant_id,
        "cancel_url": account_url(account.tenant_id),
    }


@blp.errorhandler(ReauthenticationRequired)
@in_page_tenant(from_=account_page)  # the page's tenant, whose account raised this
def reauthentication_required(exc: ReauthenticationRequired) -> Response:
    """A credential change with an old sign-in: ask for the password first."""
    account = exc.account
    return page("account_reauth.html", **_reauth_context(account, _return_path(account.tenant_id)))


@blp.route("/account/reauthenticate", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def reauthenticate() -> Response:
    """Check the signed-in user's password again, then go where the user was going"""
    sealed = browser.unseal(REAUTHENTICATE, request.form.get("request"))
    account = require_account()
    target = safe_next(sealed.get("next"), account.tenant_id)
    show_form_on_error("account_reauth.html", **_reauth_context(account, target))
    browser.check_csrf(request.form.get("csrf_token"))
    if sealed.get("tid") != account.tenant_id or sealed.get("sid") != account.session_id:
        raise Invalid(_("You signed in again meanwhile. Try once more."), code="form_expired")
    form = load_form(PasswordForm(), _("Enter your password."))
    user = account_service.signed_in_user(
        tenant_id=account.tenant_id, session_id=account.session_id
    )
    account_service.reauthenticate(
        user=user, session_id=account.session_id, password=form["password"], ip=client_ip()
    )
    return redirect(target, code=303)  # type: ignore[return-value]
