"""Routes of the account page's passkeys (`/account/passkeys`): list, add, rename and
remove the signed-in user's passkeys. The browser's sign-in session says who (`?tenant=ID`
when it has several); every change needs a recent sign-in (REAUTH_MAX_AGE_SECONDS)."""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, request, url_for
from flask_babel import gettext as _

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, page
from app.api.hosted.account_session import (
    Account,
    account_page,
    require_account,
    require_recent,
)
from app.api.hosted.edge import in_page_tenant
from app.api.hosted.passkey_routes import ceremony_answer, ceremony_challenge, posted_credential
from app.core.http import accepts_form
from app.credentials import passkeys as passkey_service
from app.users import service as user_service


def _passkeys_page(account: Account, **context: Any) -> Response:
    user = user_service.get_user(account.user_id)
    passkeys = passkey_service.list_passkeys(user)
    return page("account_passkeys.html", passkeys=passkeys, tenant=account.tenant_id, **context)


def _account_form() -> Account:
    """The signed-in account behind a form of the passkeys page, with a recent sign-in."""
    account = require_account()
    browser.check_csrf(request.form.get("csrf_token"))
    return require_recent(account)


def _back(account: Account, notice: str) -> Response:
    location = url_for("hosted.account_passkeys", tenant=account.tenant_id, notice=notice)
    return redirect(location, code=303)  # type: ignore[return-value]


NOTICES = {"added": "Passkey added.", "removed": "Passkey removed.", "renamed": "Passkey renamed."}


@blp.route("/account/passkeys", methods=["GET"])
@public
@in_page_tenant(from_=account_page)
def account_passkeys() -> Response:
    """List the signed-in user's passkeys"""
    account = require_account()
    notice = NOTICES.get(request.args.get("notice", ""))
    return _passkeys_page(account, notice=_(notice) if notice else None)


@blp.route("/account/passkeys/options", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_passkey_options() -> Response:
    """WebAuthn options to create a passkey for the signed-in user (JSON)"""
    account = _account_form()
    user = user_service.get_user(account.user_id)
    ceremony = passkey_service.registration_options(user=user)
    return ceremony_answer(ceremony, "register", uid=account.user_id)


@blp.route("/account/passkeys", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_passkey_add() -> Response:
    """Add the passkey the browser just created"""
    account = _account_form()
    user = user_service.get_user(account.user_id)
    passkey_service.register(
        user=user,
        credential=posted_credential(),
        challenge=ceremony_challenge("register", uid=account.user_id),
        name=request.form.get("name"),
        actor=f"user:{user.id}",
        ip=client_ip(),
    )
    return _back(account, "added")


@blp.route("/account/passkeys/<passkey_id>/rename", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_passkey_rename(passkey_id: str) -> Response:
    """Rename one of the signed-in user's passkeys"""
    account = _account_form()
    user = user_service.get_user(account.user_id)
    passkey_service.rename(user=user, passkey_id=passkey_id, name=request.form.get("name", ""))
    return _back(account, "renamed")


@blp.route("/account/passkeys/<passkey_id>/remove", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_passkey_remove(passkey_id: str) -> Response:
    """Remove one of the signed-in user's passkeys"""
    account = _account_form()
    user = user_service.get_user(account.user_id)
    passkey_service.remove(
        user=user, passkey_id=passkey_id, actor=f"user:{user.id}", ip=client_ip()
    )
    return _back(account, "removed")
