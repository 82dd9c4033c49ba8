"""The account page (`/account`): the signed-in user changes its name and password, sees
its sessions and signs them out. It serves the tenant of the browser's sign-in session
(`?tenant=ID` picks one of several); without one it offers a sign-in for that tenant
(the login page's steps, ending here), and before a credential change it asks for the
password again when the sign-in is older than REAUTH_MAX_AGE_SECONDS."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import marshmallow as ma
from flask import Response, current_app, redirect, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from werkzeug.exceptions import MethodNotAllowed, NotFound

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, devices, page, show_form_on_error
from app.api.hosted.account_session import (
    Account,
    AccountSignInRequired,
    ReauthenticationRequired,
    require_account,
    require_recent,
)
from app.applications import account as account_service
from app.applications import login
from app.core.errors import Invalid
from app.core.http import accepts_form
from app.core.tenancy import tenant_scope
from app.tenants import service as tenant_service
from app.tokens.sessions import SessionView

ACCOUNT_LOGIN = "account-login"
ACCOUNT_SECOND_FACTOR = "account-second-factor"
REAUTHENTICATE = "account-reauth"
# What a finished action says on the account page (`?done=`).
DONE = {
    "profile": "Your name was saved.",
    "password": "Your password was changed. Your other sessions were signed out.",
    "session": "The session was signed out.",
    "others": "All your other sessions were signed out.",
    "reauthenticated": "Thank you: you can change your credentials now.",
}


class LoginForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))


class CodeForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=16))


class PasswordForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))


class NameForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    display_name = ma.fields.String(load_default="", validate=ma.validate.Length(max=255))
    first_name = ma.fields.String(load_default="", validate=ma.validate.Length(max=255))
    last_name = ma.fields.String(load_default="", validate=ma.validate.Length(max=255))


class NewPasswordForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    new_password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))
    confirm_password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))


class SessionForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    session = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[0-9a-f]{1,32}$"))


def _form(schema: ma.Schema, message: str) -> dict[str, Any]:
    try:
        return schema.load(request.form.to_dict())
    except ma.ValidationError as exc:
        raise Invalid(message, code="invalid_form", fields=exc.normalized_messages()) from exc


def account_url(tenant_id: str, endpoint: str = "hosted.account", **params: str) -> str:
    return url_for(endpoint, tenant=tenant_id, **params)


def _safe_next(target: Any, tenant_id: str) -> str:
    """Where to go after a sign-in or a reauthentication: a path of the account pages,
    else the account page."""
    if isinstance(target, str) and target.startswith("/account") and "//" not in target:
        return target
    return account_url(tenant_id)


def _tenant_name(tenant_id: str) -> str:
    tenant = tenant_service.get_tenant(tenant_id)
    return str((tenant.branding or {}).get("display_name") or tenant.name)


# ---- signing in for the account page ----------------------------------------------


def _login_page(tenant_id: str, target: str, *, username: str = "", status: int = 200) -> Response:
    sealed = browser.seal(ACCOUNT_LOGIN, {"tid": tenant_id, "next": target})
    return page(
        "account_login.html",
        status,
        tenant_name=_tenant_name(tenant_id),
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
        return _login_page(exc.tenant_id, _safe_next(target, exc.tenant_id))
    choices = [
        (tenant_id, _tenant_name(tenant_id))
        for tenant_id in browser.all_sessions()
        if tenant_service.find_tenant(tenant_id) is not None
    ]
    return page("account_choose.html", choices=choices)


def _keep_session(response: Response, tenant_id: str, session_id: str) -> None:
    """Keep the new sign-in session in the browser (one the browser had before with this
    tenant ends, as on the login page)."""
    replaced = browser.read_session(tenant_id)
    if replaced is not None and replaced != session_id:
        with tenant_scope(tenant_id):
            login.sign_out(tenant_id=tenant_id, session_id=replaced)
    browser.keep_session(response, tenant_id, session_id)


def _signed_in(outcome: login.Outcome, tenant_id: str, target: str) -> Response:
    browser.rotate_csrf()
    assert outcome.session_id is not None
    if outcome.second_factor_failures:
        response = page(
            "account_notice.html", failures=outcome.second_factor_failures, next_url=target
        )
    else:
        response = redirect(target, code=303)  # type: ignore[assignment]
    _keep_session(response, tenant_id, outcome.session_id)
    return response


def _second_factor_seal(pending: dict[str, Any]) -> str:
    return browser.seal(ACCOUNT_SECOND_FACTOR, pending, once=True)


@blp.route("/account/login", methods=["POST"])
@accepts_form
@public
def account_login() -> Response:
    """Check the username (or email) and password of a sign-in for the account page"""
    sealed = request.form.get("request")
    pending = browser.unseal(ACCOUNT_LOGIN, sealed)
    tenant_id, target = str(pending["tid"]), _safe_next(pending.get("next"), str(pending["tid"]))
    username = request.form.get("username", "")[:255]
    show_form_on_error(
        "account_login.html",
        tenant_name=_tenant_name(tenant_id),
        request_seal=sealed,
        username=username,
    )
    browser.check_csrf(request.form.get("csrf_token"))
    form = _form(LoginForm(), _("Enter your username or email address and your password."))
    with tenant_scope(tenant_id):
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
def account_second_factor() -> Response:
    """Check the one-time code of a sign-in for the account page"""
    step = browser.unseal(
        ACCOUNT_SECOND_FACTOR, request.form.get("pending"), browser.SECOND_FACTOR_TTL, once=True
    )
    tenant_id, target = str(step["tid"]), _safe_next(step.get("next"), str(step["tid"]))
    # The submitted form is used up: an error shows a fresh one.
    show_form_on_error("account_second_factor.html", pending=_second_factor_seal(step))
    browser.check_csrf(request.form.get("csrf_token"))
    form = _form(CodeForm(), _("Enter the code your authenticator app shows."))
    with tenant_scope(tenant_id):
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
        return _safe_next(request.full_path.rstrip("?"), tenant_id)
    adapter = current_app.url_map.bind("localhost")
    try:
        adapter.match(request.path, method="GET")
    except (NotFound, MethodNotAllowed):
        return account_url(tenant_id)
    return _safe_next(f"{request.path}?{urlencode({'tenant': tenant_id})}", tenant_id)


def _reauth_context(account: Account, target: str) -> dict[str, Any]:
    with tenant_scope(account.tenant_id):
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
def reauthentication_required(exc: ReauthenticationRequired) -> Response:
    """A credential change with an old sign-in: ask for the password first."""
    account = exc.account
    return page("account_reauth.html", **_reauth_context(account, _return_path(account.tenant_id)))


@blp.route("/account/reauthenticate", methods=["POST"])
@accepts_form
@public
def reauthenticate() -> Response:
    """Check the signed-in user's password again, then go where the user was going"""
    sealed = browser.unseal(REAUTHENTICATE, request.form.get("request"))
    account = require_account()
    target = _safe_next(sealed.get("next"), account.tenant_id)
    show_form_on_error("account_reauth.html", **_reauth_context(account, target))
    browser.check_csrf(request.form.get("csrf_token"))
    if sealed.get("tid") != account.tenant_id or sealed.get("sid") != account.session_id:
        raise Invalid(_("You signed in again meanwhile. Try once more."), code="form_expired")
    form = _form(PasswordForm(), _("Enter your password."))
    with tenant_scope(account.tenant_id):
        user = account_service.signed_in_user(
            tenant_id=account.tenant_id, session_id=account.session_id
        )
        account_service.reauthenticate(
            user=user, session_id=account.session_id, password=form["password"], ip=client_ip()
        )
    return redirect(target, code=303)  # type: ignore[return-value]


# ---- the account page ----------------------------------------------------------------


def _session_rows(sessions: list[SessionView], app_names: dict[str, str]) -> list[dict[str, Any]]:
    """What the page shows of each session (plain values: an error page shown after a
    rollback must not load rows again)."""

    def row(view: SessionView) -> dict[str, Any]:
        app_name = app_names.get(view.client_id or "", "") if view.client_id else ""
        return {
            "id": view.id,
            "kind": view.kind,
            "device": devices.describe(view.user_agent),
            "app_name": app_name,
            "ip": view.ip or _("unknown"),
            "last_seen": format_datetime(view.last_seen_at, "long"),
            "last_seen_iso": view.last_seen_at.isoformat(),
            "current": view.current,
            "apps": sorted({app_names.get(c.client_id or "", "") for c in view.children} - {""}),
        }

    return [row(view) for view in sessions]


def _account_context(account: Account) -> dict[str, Any]:
    with tenant_scope(account.tenant_id):
        user = account_service.signed_in_user(
            tenant_id=account.tenant_id, session_id=account.session_id
        )
        listed = account_service.list_sessions(user=user, current_session_id=account.session_id)
        context = {
            "tenant_id": account.tenant_id,
            "tenant_name": _tenant_name(account.tenant_id),
            "who": user.display_name or user.email or user.username or user.id,
            "names": {key: getattr(user, key) or "" for key in account_service.NAME_FIELDS},
            "sessions": _session_rows(listed.sessions, listed.app_names),
        }
    tenant = urlencode({"tenant": account.tenant_id})
    context.update(
        others=any(not row["current"] for row in context["sessions"]),
        password_url=account_url(account.tenant_id, "hosted.account_password"),
        # The pages of two-step verification and passkeys (their own modules).
        mfa_url=f"/account/mfa?{tenant}",
        passkeys_url=f"/account/passkeys?{tenant}",
    )
    return context


@blp.route("/account", methods=["GET"])
@public
def account() -> Response:
    """Show the signed-in user's account: name, security, sessions"""
    account = require_account()
    with tenant_scope(account.tenant_id):
        account_service.seen(session_id=account.session_id)
    done = DONE.get(request.args.get("done", ""))
    return page("account.html", done=_(done) if done else None, **_account_context(account))


def _back(account: Account, done: str) -> Response:
    return redirect(account_url(account.tenant_id, done=done), code=303)  # type: ignore[return-value]


@blp.route("/account/profile", methods=["POST"])
@accepts_form
@public
def account_profile() -> Response:
    """Change the signed-in user's name"""
    account = require_account()
    show_form_on_error("account.html", **_account_context(account))
    browser.check_csrf(request.form.get("csrf_token"))
    form = _form(NameForm(), _("A name can be at most 255 characters long."))
    with tenant_scope(account.tenant_id):
        user = account_service.signed_in_user(
            tenant_id=account.tenant_id, session_id=account.session_id
        )
        account_service.change_name(user=user, names=form)
    return _back(account, "profile")


def _password_context(account: Account) -> dict[str, Any]:
    with tenant_scope(account.tenant_id):
        min_length = tenant_service.get_tenant(account.tenant_id).password_min_length
    return {
        "tenant_id": account.tenant_id,
        "min_length": min_length,
        "cancel_url": account_url(account.tenant_id),
    }


@blp.route("/account/password", methods=["GET"])
@public
def account_password() -> Response:
    """Show the form that changes the signed-in user's password"""
    account = require_recent(require_account())
    return page("account_password.html", **_password_context(account))


@blp.route("/account/password", methods=["POST"])
@accepts_form
@public
def account_password_submit() -> Response:
    """Change the signed-in user's password; every other session ends"""
    account = require_account()
    show_form_on_error("account_password.html", **_password_context(account))
    browser.check_csrf(request.form.get("csrf_token"))
    require_recent(account)
    form = _form(NewPasswordForm(), _("Enter the new password twice."))
    if form["new_password"] != form["confirm_password"]:
        raise Invalid(_("The two passwords do not match."), code="password_mismatch")
    with tenant_scope(account.tenant_id):
        user = account_service.signed_in_user(
            tenant_id=account.tenant_id, session_id=account.session_id
        )
        account_service.change_password(
            user=user,
            session_id=account.session_id,
            auth_time=account.auth_time,
            new_password=form["new_password"],
            ip=client_ip(),
        )
    return _back(account, "password")


@blp.route("/account/sessions/sign-out", methods=["POST"])
@accepts_form
@public
def account_sign_out_session() -> Response:
    """Sign out one of the user's sessions, and the apps signed in through it"""
    account = require_account()
    show_form_on_error("account.html", **_account_context(account))
    browser.check_csrf(request.form.get("csrf_token"))
    form = _form(SessionForm(), _("Choose a session to sign out."))
    if form["session"] == account.session_id:
        return _sign_out_here(account)
    with tenant_scope(account.tenant_id):
        user = account_service.signed_in_user(
            tenant_id=account.tenant_id, session_id=account.session_id
        )
        account_service.sign_out_session(user=user, session_id=form["session"], ip=client_ip())
    return _back(account, "session")


@blp.route("/account/sessions/sign-out-others", methods=["POST"])
@accepts_form
@public
def account_sign_out_others() -> Response:
    """Sign out every session but this browser's"""
    account = require_account()
    show_form_on_error("account.html", **_account_context(account))
    browser.check_csrf(request.form.get("csrf_token"))
    with tenant_scope(account.tenant_id):
        user = account_service.signed_in_user(
            tenant_id=account.tenant_id, session_id=account.session_id
        )
        account_service.sign_out_others(
            user=user, keep_session_id=account.session_id, ip=client_ip()
        )
    return _back(account, "others")


def _sign_out_here(account: Account) -> Response:
    with tenant_scope(account.tenant_id):
        login.sign_out(tenant_id=account.tenant_id, session_id=account.session_id)
    response = page("signed_out.html")
    browser.forget_session(response, account.tenant_id)
    return response


@blp.route("/account/logout", methods=["POST"])
@accepts_form
@public
def account_logout() -> Response:
    """Sign this browser out of the account page's tenant"""
    account = require_account()
    browser.check_csrf(request.form.get("csrf_token"))
    return _sign_out_here(account)
