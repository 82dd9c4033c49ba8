"""Routes of the hosted self-service pages before a sign-in: sign-up (`/signup`), the
email-verification link that signs a new user in (`/verify-email`), the forgotten
password (`/forgot-password`) and the reset page its mail links to (`/reset-password`).

Each page belongs to one tenant: the one of the app's authorization request the login
page's link carries (sealed, `?authz=`, so the flow goes back to the app at the end), or
`?tenant=ID` for a flow that began elsewhere. The rules (limits, policy, enumeration,
mails) are the services'; these routes only translate HTTP."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, g, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, page, routes, show_form_on_error
from app.api.hosted.edge import PageOrigin, in_page_tenant, named_tenant, page_origin
from app.api.hosted.forms import load_form
from app.applications import selfservice
from app.applications.authorization import AuthorizationRequest
from app.core.errors import Invalid, NotFound
from app.core.http import accepts_form
from app.core.tenancy import current_tenant_id
from app.credentials import reset as reset_service
from app.credentials import verification
from app.signin import signup as signup_service
from app.tenants import service as tenant_service

MAX_TOKEN = 8192
FIELD_LABELS = {
    "name": _l("Full name"),
    "given_name": _l("Given name"),
    "family_name": _l("Family name"),
    "nickname": _l("Nickname"),
    "username": _l("Username"),
}
FIELD_AUTOCOMPLETE = {
    "name": "name",
    "given_name": "given-name",
    "family_name": "family-name",
    "nickname": "nickname",
    "username": "username",
}


def _text(maximum: int, *, required: bool = False) -> ma.fields.String:
    return ma.fields.String(
        required=required,
        validate=[
            ma.validate.Length(min=1 if required else 0, max=maximum),
            ma.validate.Regexp(r"^[^\x00]*\Z", error="Must not contain NUL characters."),
        ],
    )


class SignupForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    email = _text(254, required=True)
    password = _text(1024, required=True)
    confirm = _text(1024, required=True)
    name = _text(255)
    given_name = _text(255)
    family_name = _text(255)
    nickname = _text(255)
    username = _text(128)


class EmailForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    email = _text(254, required=True)


class NewPasswordForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    password = _text(1024, required=True)
    confirm = _text(1024, required=True)


def _check_confirmation(form: dict[str, Any]) -> None:
    if form["password"] != form["confirm"]:
        raise Invalid(
            _("The two passwords are not the same."),
            code="password_mismatch",
            fields={"confirm": ["Not the same."]},
        )


def _no_such_page() -> NotFound:
    return NotFound(_("This page does not exist."), code="not_found")


def self_service_origin() -> PageOrigin:
    """The edge of a self-service page: its tenant and the app's request it began from,
    the sealed request of the login page's link (`authz`), or the tenant it names
    (`tenant`), in the query of a page or the fields of its form."""
    values = request.form if request.method == "POST" else request.args
    sealed = values.get("authz")
    if sealed:
        payload = browser.unseal(routes.AUTHORIZE, sealed)
        authz = AuthorizationRequest.from_dict(payload)
        return PageOrigin(authz.tenant_id, payload, authz)
    tenant_id = str(values.get("tenant") or "")[:32]
    if not tenant_id or tenant_service.find_tenant(tenant_id) is None:
        raise _no_such_page()
    return PageOrigin(tenant_id)


def _origin() -> tuple[str, AuthorizationRequest | None]:
    """The tenant of this self-service page and the app's request, if any (its edge's)."""
    origin = page_origin()
    assert origin.tenant_id is not None  # self_service_origin names one or raises
    return origin.tenant_id, origin.authz


def _carry(authz: AuthorizationRequest | None) -> str | None:
    """The request, sealed afresh for the next form."""
    return browser.seal(routes.AUTHORIZE, authz.as_dict()) if authz is not None else None


def _sign_in_url(authz: AuthorizationRequest | None) -> str | None:
    """The login page of the app's request: the request again, as the app sent it."""
    if authz is None:
        return None
    params = {
        "response_type": "code",
        "client_id": authz.client_id,
        "code_challenge": authz.code_challenge,
        "code_challenge_method": "S256",
    }
    if authz.redirect_uri_given:
        params["redirect_uri"] = authz.redirect_uri
    for name in ("state", "nonce", "scope", "login_hint", "ui_locales"):
        value = getattr(authz, name)
        if value is not None:
            params[name] = value
    if authz.prompt:
        params["prompt"] = " ".join(sorted(authz.prompt))
    if authz.max_age is not None:
        params["max_age"] = str(authz.max_age)
    return url_for("hosted.authorize", **params)


def _app_name(authz: AuthorizationRequest | None) -> str | None:
    return routes.application_name(authz) if authz is not None else None


def _password_hint(tenant_id: str) -> str:
    """What the tenant's password policy asks for, under a new password's field."""
    tenant = tenant_service.get_tenant(tenant_id)
    if tenant.password_block_common:
        return _(
            "At least %(count)s characters, not a common password.",
            count=tenant.password_min_length,
        )
    return _("At least %(count)s characters.", count=tenant.password_min_length)


def _continue(continued: selfservice.Continued, tenant_id: str, done: str) -> Response:
    """After a mail-proved step: on to the app with its code, to the second factor, or
    the `done` page (signed in, or told to sign in)."""
    outcome, authz = continued.outcome, continued.request
    if outcome is not None and outcome.pending_user is not None and authz is not None:
        user_id, generation = outcome.pending_user, outcome.pending_generation
        kinds = outcome.pending_kinds or ("totp",)
        return page(
            "second_factor.html", **routes.second_factor_page(authz, user_id, generation, kinds)
        )
    if outcome is None or outcome.session_id is None:
        if authz is not None:  # the login page signs in (and enrols a required factor)
            return redirect(_sign_in_url(authz), code=303)  # type: ignore[return-value]
        return page(done, signed_in=False)
    browser.rotate_csrf()
    if outcome.location is not None:
        response: Response = redirect(outcome.location, code=303)  # type: ignore[assignment]
    else:
        response = page(done, signed_in=True)
    routes.keep_sign_in(response, tenant_id, outcome.session_id)
    return response


@blp.context_processor
def _self_service_links() -> dict[str, Any]:
    def signup_offered() -> bool:
        """Whether the login page of this request offers sign-up."""
        authz = g.get("authz")
        return authz is not None and signup_service.signup_enabled(tenant_id=authz.tenant_id)

    return {"signup_offered": signup_offered}


# --- sign-up ---------------------------------------------------------------------------


def _signup_page(tenant_id: str, authz: AuthorizationRequest | None) -> dict[str, Any]:
    """The sign-up form's context (NotFound when the tenant offers no sign-up)."""
    fields = signup_service.signup_fields(tenant_id=tenant_id)
    return {
        "app_name": _app_name(authz),
        "sign_in_url": _sign_in_url(authz),
        "authz": _carry(authz),
        "tenant": None if authz is not None else tenant_id,
        "fields": fields,
        "field_labels": {name: str(label) for name, label in FIELD_LABELS.items()},
        "field_autocomplete": FIELD_AUTOCOMPLETE,
        "password_hint": _password_hint(tenant_id),
        "profile": {},
    }


@blp.route("/signup", methods=["GET"])
@public
@in_page_tenant(from_=self_service_origin)
def signup() -> Response:
    """The sign-up form (only for a tenant with signup_enabled)"""
    tenant_id, authz = _origin()
    return page("signup.html", **_signup_page(tenant_id, authz))


@blp.route("/signup", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=self_service_origin)
def signup_submit() -> Response:
    """Sign up; the same "check your mail" page whether or not the address is registered"""
    tenant_id, authz = _origin()
    context = _signup_page(tenant_id, authz)
    context["email"] = request.form.get("email", "")[:254]
    context["profile"] = {
        name: request.form.get(name, "")[:255].replace("\x00", "") for name in context["fields"]
    }
    show_form_on_error("signup.html", **context)
    browser.check_csrf(request.form.get("csrf_token"))
    form = load_form(SignupForm(), _("Enter your email address and a password, twice."))
    _check_confirmation(form)
    profile = {name: form[name] for name in context["fields"] if form.get(name)}
    signup_service.sign_up(
        tenant_id=tenant_id,
        email=form["email"],
        password=form["password"],
        profile=profile,
        continue_with=authz.as_dict() if authz is not None else None,
        ip=client_ip(),
    )
    message = _("To finish signing up, open the link we have just mailed to your address.")
    return page("check_mail.html", message=message)


def _verification_tenant() -> str:
    """The tenant the verification link was mailed in; Invalid for a link that is none."""
    token = request.args.get("token", "")
    if not token or len(token) > MAX_TOKEN:
        raise Invalid(_("The link is invalid, used or expired"), code="verification_token_invalid")
    return verification.token_tenant(token)


@blp.route("/verify-email", methods=["GET"])
@public
@in_page_tenant(from_=named_tenant(_verification_tenant))
def verify_email() -> Response:
    """Mark an email address verified with the link mailed to it; a sign-up's link also
    signs the user in and goes on to the app's request"""
    token = request.args.get("token", "")
    tenant_id = current_tenant_id()
    verified = verification.confirm(token=token, ip=client_ip())
    continued = selfservice.after_verification(
        verified=verified, ip=client_ip(), user_agent=_user_agent()
    )
    if continued is None:
        return page("email_verified.html")
    return _continue(continued, tenant_id, "signed_up.html")


def _user_agent() -> str | None:
    agent = request.headers.get("User-Agent")
    return agent[:512] if agent else None


# --- forgot and reset password ---------------------------------------------------------


@blp.route("/forgot-password", methods=["GET"])
@public
@in_page_tenant(from_=self_service_origin)
def forgot_password() -> Response:
    """Ask for the email address to mail a reset link to"""
    tenant_id, authz = _origin()
    tenant = None if authz is not None else tenant_id
    return page(
        "forgot_password.html", authz=_carry(authz), tenant=tenant, sign_in_url=_sign_in_url(authz)
    )


@blp.route("/forgot-password", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=self_service_origin)
def forgot_password_submit() -> Response:
    """Mail the hosted reset link; the same page whether or not the address is registered"""
    tenant_id, authz = _origin()
    show_form_on_error(
        "forgot_password.html",
        authz=_carry(authz),
        sign_in_url=_sign_in_url(authz),
        tenant=None if authz is not None else tenant_id,
        email=request.form.get("email", "")[:254],
    )
    browser.check_csrf(request.form.get("csrf_token"))
    form = load_form(EmailForm(), _("Enter your email address."))
    signup_service.forgot_password(
        tenant_id=tenant_id,
        email=form["email"],
        continue_with=authz.as_dict() if authz is not None else None,
        ip=client_ip(),
    )
    message = _(
        "If an account uses this address, we have mailed it a link to choose a new password."
    )
    return page("check_mail.html", message=message)


def _reset_tenant() -> str | None:
    """The tenant of the reset link (the page's query, or its form's `token`), None when
    the token is no valid one or its tenant is gone (the page then says "link invalid")."""
    token = (request.form if request.method == "POST" else request.args).get("token", "")
    if not token or len(token) > MAX_TOKEN:
        return None
    tenant_id = reset_service.token_tenant(token)
    if tenant_id is None or tenant_service.find_tenant(tenant_id) is None:
        return None
    return tenant_id


def _link_invalid(tenant_id: str | None) -> Response:
    return page("reset_link_invalid.html", 400, tenant=tenant_id)


@blp.route("/reset-password", methods=["GET"])
@public
@in_page_tenant(from_=named_tenant(_reset_tenant))
def reset_password() -> Response:
    """The form for a new password, opened from the reset mail's link"""
    token = request.args.get("token", "")
    tenant_id = page_origin().tenant_id
    if tenant_id is None:
        return _link_invalid(None)
    try:
        reset_service.check_token(token=token)
    except Invalid:
        return _link_invalid(tenant_id)
    return page("reset_password.html", token=token, password_hint=_password_hint(tenant_id))


@blp.route("/reset-password", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=named_tenant(_reset_tenant))
def reset_password_submit() -> Response:
    """Set the new password, sign in, end every other session, and go back to the app"""
    token = request.form.get("token", "")
    tenant_id = page_origin().tenant_id
    if tenant_id is None:
        return _link_invalid(None)
    show_form_on_error("reset_password.html", token=token, password_hint=_password_hint(tenant_id))
    browser.check_csrf(request.form.get("csrf_token"))
    form = load_form(NewPasswordForm(), _("Enter the new password twice."))
    _check_confirmation(form)
    try:
        continued = selfservice.reset_password(
            token=token, password=form["password"], ip=client_ip(), user_agent=_user_agent()
        )
    except Invalid as exc:
        if exc.code != "reset_token_invalid":
            raise
        return _link_invalid(tenant_id)
    return _continue(continued, tenant_id, "password_changed.html")
