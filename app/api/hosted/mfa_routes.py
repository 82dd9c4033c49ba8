"""Routes of two-step verification on the hosted pages: the switch between the code and
a recovery code on the second-factor step, its Cancel, the TOTP enrolment in place when
the tenant or the app requires MFA and the user has no second factor (then the recovery
codes, shown once), and the account's MFA page `/account/mfa` (TOTP on or off, recovery
codes left, regenerate them). The rules are the services' (app.applications.login,
app.credentials.mfa and .recovery); these routes translate HTTP."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, g, redirect, request, url_for

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, mfa_pages, page, show_form_on_error
from app.api.hosted.account_session import (
    Account,
    account_page,
    require_account,
    require_recent,
)
from app.api.hosted.edge import in_page_tenant, page_authz, page_origin, sealed_step
from app.api.hosted.forms import CodeForm, load_form
from app.api.hosted.routes import application_name, complete_sign_in, second_factor_page
from app.applications import authorization, login
from app.applications.authorization import AuthorizationRequest
from app.core.errors import Invalid, NotFound
from app.core.http import accepts_form
from app.core.tenancy import Principal
from app.credentials import mfa as mfa_service
from app.credentials import recovery
from app.users import service as user_service
from app.users.models import User

TOTP_PROVIDER = "google-authenticator"


# --- the sign-in's second factor -------------------------------------------------------


@blp.route("/authorize/second-factor", methods=["GET"])
@public
def second_factor_method() -> Response:
    """The second-factor step again, with the code or a recovery code (`method=recovery`)"""
    sealed = request.args.get("pending")
    pending = browser.unseal(mfa_pages.SECOND_FACTOR, sealed, browser.SECOND_FACTOR_TTL)
    authz = AuthorizationRequest.from_dict(pending["authz"])
    g.authz = authz
    kinds = [str(kind) for kind in pending.get("kinds") or ["totp"]]
    method = mfa_pages.RECOVERY if request.args.get("method") == "recovery" else mfa_pages.CODE
    # The same single-use step: nothing was submitted yet.
    context = second_factor_page(
        authz, str(pending["uid"]), int(pending.get("gen", -1)), kinds, method, pending=sealed
    )
    return page("second_factor.html", **context)


@blp.route("/authorize/second-factor/cancel", methods=["POST"])
@accepts_form
@public
def second_factor_cancel() -> Response:
    """Give up the sign-in at the second step: access_denied to the app, as the login
    form's Cancel"""
    purpose = mfa_pages.ENROL if request.form.get("step") == "enrol" else mfa_pages.SECOND_FACTOR
    pending = browser.unseal(purpose, request.form.get("pending"), browser.FORM_TTL)
    authz = AuthorizationRequest.from_dict(pending["authz"])
    g.authz = authz
    browser.check_csrf(request.form.get("csrf_token"))
    raise authorization.access_denied(authz)


@blp.route("/authorize/enrol", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_step(mfa_pages.ENROL, "pending"))
def mfa_enrol_submit() -> Response:
    """Confirm the authenticator app set up during the sign-in, then show the recovery codes"""
    sealed = request.form.get("pending")
    pending, authz = page_origin().payload, page_authz()
    g.authz = authz
    user_id, generation = str(pending["uid"]), int(pending.get("gen", -1))
    browser.check_csrf(request.form.get("csrf_token"))
    started = login.enrolment_in_progress(user_id=user_id)
    if started is None:
        raise Invalid(
            "This sign-in is no longer valid. Go back to the app and sign in again.",
            code="signin_restart",
        )
    show_form_on_error(
        "mfa_enrol.html",
        **mfa_pages.enrolment_context(
            app_name=application_name(authz),
            pending=sealed or "",
            secret=started.secret,
            uri=started.uri,
        ),
    )
    form = load_form(CodeForm(), "Enter the 6-digit code your authenticator app shows.")
    outcome = login.enrolment_step(
        request=authz,
        user_id=user_id,
        generation=generation,
        code=form["code"],
        ip=client_ip(),
        **mfa_pages.step_first_factor(pending),
    )
    return complete_sign_in(outcome, authz)


# --- the account's MFA page --------------------------------------------------------------


def _principal(account: Account) -> Principal:
    return Principal(
        tenant_id=account.tenant_id,
        user_id=account.user_id,
        kind="user",
        credential_id=account.session_id,
        ip=client_ip(),
        auth_time=int(account.auth_time.timestamp()),
    )


def _user(account: Account) -> User:
    user = user_service.find_user(account.user_id)
    if user is None:
        raise NotFound("This account no longer exists", code="user_not_found")
    return user


def _overview_url(account: Account) -> str:
    return f"{url_for('hosted.account_mfa')}?{urlencode({'tenant': account.tenant_id})}"


def _overview_context(account: Account) -> dict[str, object]:
    user = _user(account)
    kinds = mfa_service.second_factor_kinds(user)
    return {
        "tenant": account.tenant_id,
        "totp_on": mfa_service.TOTP in kinds,
        "passkeys": "passkey" in kinds,
        "codes_left": recovery.remaining(user),
        "account_url": f"/account?{urlencode({'tenant': account.tenant_id})}",
    }


def _codes_page(account: Account, codes: list[str]) -> Response:
    return page("recovery_codes.html", recovery_codes=codes, continue_url=_overview_url(account))


@blp.route("/account/mfa", methods=["GET"])
@public
@in_page_tenant(from_=account_page)
def account_mfa() -> Response:
    """The signed-in user's two-step verification: TOTP, recovery codes"""
    account = require_account()
    return page("account_mfa.html", **_overview_context(account))


def _account_form(template: str) -> Account:
    """The signed-in, recently authenticated account of a form post (CSRF checked); an
    error shows the MFA page again."""
    account = require_account()
    show_form_on_error(template, **_overview_context(account))
    browser.check_csrf(request.form.get("csrf_token"))
    return require_recent(account)


@blp.route("/account/mfa/totp", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_mfa_totp_start() -> Response:
    """Start setting up an authenticator app: its QR code and key"""
    account = _account_form("account_mfa.html")
    started = mfa_service.start_totp(actor=_principal(account), user=_user(account))
    context = mfa_pages.setup_context(started.secret, started.uri)
    return page("account_mfa_enrol.html", tenant=account.tenant_id, **context)


@blp.route("/account/mfa/totp/confirm", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_mfa_totp_confirm() -> Response:
    """Turn the authenticator app on with a code it shows (recovery codes when it is the
    first second factor)"""
    account = require_account()
    started = mfa_service.pending_totp(_user(account))
    if started is None:
        raise Invalid(
            "No authenticator set-up is in progress. Start again.",
            code="mfa_enrolment_not_found",
        )
    show_form_on_error(
        "account_mfa_enrol.html",
        tenant=account.tenant_id,
        **mfa_pages.setup_context(started.secret, started.uri),
    )
    browser.check_csrf(request.form.get("csrf_token"))
    require_recent(account)
    form = load_form(CodeForm(), "Enter the 6-digit code your authenticator app shows.")
    codes = mfa_service.confirm_totp_enrolment(
        actor=_principal(account), user=_user(account), code=form["code"]
    )
    if codes:
        return _codes_page(account, codes)
    return redirect(_overview_url(account), code=303)  # type: ignore[return-value]


@blp.route("/account/mfa/totp/remove", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_mfa_totp_remove() -> Response:
    """Turn the authenticator app off (the recovery codes go with the last second factor)"""
    account = _account_form("account_mfa.html")
    mfa_service.remove(actor=_principal(account), user=_user(account), provider=TOTP_PROVIDER)
    return redirect(_overview_url(account), code=303)  # type: ignore[return-value]


@blp.route("/account/mfa/recovery-codes", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=account_page)
def account_mfa_recovery_codes() -> Response:
    """Replace every recovery code with ten new ones, shown once"""
    account = _account_form("account_mfa.html")
    codes = mfa_service.regenerate_recovery_codes(actor=_principal(account), user=_user(account))
    return _codes_page(account, codes)
