"""The account page (`/account`): the signed-in user changes its name and password, sees
its sessions and signs them out. It serves the tenant of the browser's sign-in session
(`?tenant=ID` picks one of several); the sign-in and the "confirm it's you" step are
account_signin's."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import marshmallow as ma
from flask import Response, redirect, request
from flask_babel import format_datetime, lazy_gettext
from flask_babel import gettext as _

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, devices, page, show_form_on_error
from app.api.hosted.account_session import (
    Account,
    account_page,
    require_account,
    require_recent,
)
from app.api.hosted.account_signin import account_url, tenant_name
from app.api.hosted.edge import in_page_tenant
from app.api.hosted.forms import load_form
from app.applications import account as account_service
from app.applications import login
from app.core.errors import Invalid
from app.core.http import accepts_form
from app.tenants import service as tenant_service
from app.tokens.sessions import SessionView

# What a finished action says on the account page (`?done=`).
DONE = {
    "profile": lazy_gettext("Your name was saved."),
    "password": lazy_gettext("Your password was changed. Your other sessions were signed out."),
    "session": lazy_gettext("The session was signed out."),
    "others": lazy_gettext("All your other sessions were signed out."),
}


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
    user = account_service.signed_in_user(
        tenant_id=account.tenant_id, session_id=account.session_id
    )
    listed = account_service.list_sessions(user=user, current_session_id=account.session_id)
    context = {
        "tenant_id": account.tenant_id,
        "tenant_name": tenant_name(account.tenant_id),
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
@in_page_tenant(from_=account_page)
def account() -> Response:
    """Show the signed-in user's account: name, security, sessions"""
    account = require_account()
    account_service.seen(session_id=account.session_id)
    done = DONE.get(request.args.get("done", ""))
    return page("account.html", done=str(done) if done else None, **_account_context(account))


def _back(account: Account, done: str) -> Response:
    return redirect(account_url(account.tenant_id, done=done), code=303)  # type: ignore[return-value]


@blp.route("/account/profile", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_profile() -> Response:
    """Change the signed-in user's name"""
    account = require_account()
    show_form_on_error("account.html", **_account_context(account))
    browser.check_csrf(request.form.get("csrf_token"))
    form = load_form(NameForm(), _("A name can be at most 255 characters long."))
    user = account_service.signed_in_user(
        tenant_id=account.tenant_id, session_id=account.session_id
    )
    account_service.change_name(user=user, names=form)
    return _back(account, "profile")


def _password_context(account: Account) -> dict[str, Any]:
    min_length = tenant_service.get_tenant(account.tenant_id).password_min_length
    return {
        "tenant_id": account.tenant_id,
        "min_length": min_length,
        "cancel_url": account_url(account.tenant_id),
    }


@blp.route("/account/password", methods=["GET"])
@public
@in_page_tenant(from_=account_page)
def account_password() -> Response:
    """Show the form that changes the signed-in user's password"""
    account = require_recent(require_account())
    return page("account_password.html", **_password_context(account))


@blp.route("/account/password", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_password_submit() -> Response:
    """Change the signed-in user's password; every other session ends"""
    account = require_account()
    show_form_on_error("account_password.html", **_password_context(account))
    browser.check_csrf(request.form.get("csrf_token"))
    require_recent(account)
    form = load_form(NewPasswordForm(), _("Enter the new password twice."))
    if form["new_password"] != form["confirm_password"]:
        raise Invalid(_("The two passwords do not match."), code="password_mismatch")
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
@in_page_tenant(from_=account_page)
def account_sign_out_session() -> Response:
    """Sign out one of the user's sessions, and the apps signed in through it"""
    account = require_account()
    show_form_on_error("account.html", **_account_context(account))
    browser.check_csrf(request.form.get("csrf_token"))
    form = load_form(SessionForm(), _("Choose a session to sign out."))
    if form["session"] == account.session_id:
        return _sign_out_here(account)
    user = account_service.signed_in_user(
        tenant_id=account.tenant_id, session_id=account.session_id
    )
    account_service.sign_out_session(user=user, session_id=form["session"], ip=client_ip())
    return _back(account, "session")


@blp.route("/account/sessions/sign-out-others", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_sign_out_others() -> Response:
    """Sign out every session but this browser's"""
    account = require_account()
    show_form_on_error("account.html", **_account_context(account))
    browser.check_csrf(request.form.get("csrf_token"))
    user = account_service.signed_in_user(
        tenant_id=account.tenant_id, session_id=account.session_id
    )
    account_service.sign_out_others(user=user, keep_session_id=account.session_id, ip=client_ip())
    return _back(account, "others")


def _sign_out_here(account: Account) -> Response:
    login.sign_out(tenant_id=account.tenant_id, session_id=account.session_id)
    response = page("signed_out.html")
    browser.forget_session(response, account.tenant_id)
    return response


@blp.route("/account/logout", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_logout() -> Response:
    """Sign this browser out of the account page's tenant"""
    account = require_account()
    browser.check_csrf(request.form.get("csrf_token"))
    return _sign_out_here(account)
