"""Routes of the hosted pages for passkeys: sign in with one (button or the browser's
autofill), one as the second factor, and the offer to add one right after a password
sign-in (the account page's list is in account_passkey_routes).

Each ceremony has two requests: `…/options` answers JSON for the page script
(static/passkeys.js) with the WebAuthn options and a sealed ceremony (the challenge, single
use, bound to this browser, short-lived); the script then posts the browser's answer as a
plain form, so success and failure are ordinary page navigations (redirect to the app, or
the form again with the error)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from flask import Response, current_app, g, request
from flask_babel import gettext as _

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, mfa_pages, page, show_form_on_error
from app.api.hosted.edge import (
    Resolver,
    in_page_tenant,
    page_authz,
    page_origin,
    sealed_request,
    sealed_step,
)
from app.api.hosted.routes import (
    AUTHORIZE,
    SECOND_FACTOR,
    SIGNED_IN,
    _to_client,
    application_name,
    complete_sign_in,
    keep_sign_in,
    login_context,
    second_factor_page,
)
from app.applications import login
from app.applications.authorization import AuthorizationRequest
from app.core.errors import Invalid
from app.core.http import accepts_form
from app.credentials import passkeys as passkey_service

CEREMONY = "passkey-ceremony"
CEREMONY_TTL = 5 * 60
# A browser that skipped the offer to add a passkey is not asked again for this long.
SKIP_COOKIE = "gh_passkey_skip"
SKIP_SECONDS = 90 * 24 * 3600
MAX_CREDENTIAL = 32 * 1024


def passkeys_enabled() -> bool:
    """Whether passkeys can work at all: browsers refuse an IP address as relying party."""
    try:
        ipaddress.ip_address(str(current_app.config["WEBAUTHN_RP_ID"]))
    except ValueError:
        return True
    return False


@blp.context_processor
def _passkey_context() -> dict[str, Any]:
    # The page script offers passkeys only at these origins: the browser knows its own
    # origin, which a proxy may hide from the app.
    return {
        "passkeys_enabled": passkeys_enabled(),
        "passkey_origins": " ".join(current_app.config["WEBAUTHN_ORIGINS"]),
    }


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def ceremony_answer(ceremony: passkey_service.Ceremony | None, kind: str, **bound: Any) -> Response:
    """The options and the sealed challenge for the page script ({"available": false}
    when there is nothing to offer)."""
    if ceremony is None:
        return _json({"available": False})
    sealed = browser.seal(
        CEREMONY, {"kind": kind, "challenge": ceremony.challenge, **bound}, once=True
    )
    return _json(
        {"available": True, "publicKey": json.loads(ceremony.options_json), "ceremony": sealed}
    )


def ceremony_challenge(kind: str, **bound: Any) -> str:
    """The challenge of the ceremony the form posts back (once; of this kind and bound
    to the same request or user); Invalid otherwise."""
    sealed = browser.unseal(CEREMONY, request.form.get("ceremony"), CEREMONY_TTL, once=True)
    if sealed.get("kind") != kind or any(sealed.get(k) != v for k, v in bound.items()):
        raise Invalid(
            _("This passkey request does not belong here. Try again."), code="form_expired"
        )
    return str(sealed["challenge"])


def posted_credential() -> str:
    credential = request.form.get("credential", "")
    if not credential or len(credential) > MAX_CREDENTIAL:
        raise Invalid(_("The browser sent no passkey. Try again."), code="passkey_invalid")
    return credential


# Sign in with a passkey (login page) ---------------------------------------------------


@blp.route("/authorize/passkey/options", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_request(AUTHORIZE, "authz"))
def passkey_signin_options() -> Response:
    """WebAuthn options to sign in with any passkey of this site (JSON for the script)"""
    authz = page_authz()
    browser.check_csrf(request.form.get("csrf_token"))
    ceremony = passkey_service.authentication_options()
    return ceremony_answer(ceremony, "signin", tid=authz.tenant_id)


@blp.route("/authorize/passkey", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_request(AUTHORIZE, "authz"))
def passkey_signin() -> Response:
    """Sign in with the passkey the browser signed the challenge with"""
    sealed = request.form.get("authz")
    authz = page_authz()
    g.authz = authz
    show_form_on_error("login.html", **login_context(authz, sealed=sealed))
    browser.check_csrf(request.form.get("csrf_token"))
    challenge = ceremony_challenge("signin", tid=authz.tenant_id)
    outcome = login.passkey_step(
        request=authz, credential=posted_credential(), challenge=challenge, ip=client_ip()
    )
    return complete_sign_in(outcome, authz)


# A passkey as the second factor -------------------------------------------------------


def _second_factor_step(*, once: bool) -> Resolver:
    """The edge of a second-factor form: the sealed pending step (`pending`)."""
    return sealed_step(SECOND_FACTOR, "pending", max_age=browser.SECOND_FACTOR_TTL, once=once)


def _pending() -> tuple[dict[str, Any], AuthorizationRequest]:
    return page_origin().payload, page_authz()


@blp.route("/authorize/second-factor/passkey/options", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=_second_factor_step(once=False))  # the form stays usable for a code
def passkey_second_factor_options() -> Response:
    """WebAuthn options for the pending user's own passkeys (JSON for the script)"""
    pending, authz = _pending()
    browser.check_csrf(request.form.get("csrf_token"))
    user_id, generation = str(pending["uid"]), int(pending.get("gen", -1))
    ceremony = login.second_factor_passkey_options(
        request=authz, user_id=user_id, generation=generation, ip=client_ip()
    )
    return ceremony_answer(ceremony, "second-factor", uid=user_id)


@blp.route("/authorize/second-factor/passkey", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=_second_factor_step(once=True))
def passkey_second_factor() -> Response:
    """Complete a sign-in with one of the user's passkeys as the second factor"""
    pending, authz = _pending()
    g.authz = authz
    user_id, generation = str(pending["uid"]), int(pending.get("gen", -1))
    # The submitted step is used up: an error shows a fresh one.
    kinds = [str(kind) for kind in pending.get("kinds") or ()]
    show_form_on_error(
        "second_factor.html",
        **second_factor_page(authz, user_id, generation, kinds, first=mfa_pages.carried(pending)),
    )
    browser.check_csrf(request.form.get("csrf_token"))
    challenge = ceremony_challenge("second-factor", uid=user_id)
    outcome = login.second_factor_passkey_step(
        request=authz,
        user_id=user_id,
        generation=generation,
        credential=posted_credential(),
        challenge=challenge,
        ip=client_ip(),
        **mfa_pages.step_first_factor(pending),
    )
    return complete_sign_in(outcome, authz)


# The offer to add a passkey right after a password sign-in ----------------------------


def may_offer() -> bool:
    """Whether a password sign-in may be followed by the offer to add a passkey: the login
    form says the browser can make one here (the script sets the `webauthn` field when the
    browser has WebAuthn and the page is at one of WEBAUTHN_ORIGINS), and this browser did
    not skip the offer before."""
    return (
        request.form.get("webauthn") == "1"
        and passkeys_enabled()
        and not request.cookies.get(SKIP_COOKIE)
    )


def offer_page(outcome: login.Outcome, authz: AuthorizationRequest) -> Response:
    """The page offering to add a passkey to the user just signed in (no code issued yet:
    the offer's forms go on to the app)."""
    assert outcome.session_id is not None
    browser.rotate_csrf()
    signed_in = browser.seal(SIGNED_IN, {"authz": authz.as_dict(), "sid": outcome.session_id})
    response = page("passkey_offer.html", app_name=application_name(authz), signed_in=signed_in)
    keep_sign_in(response, authz.tenant_id, outcome.session_id)
    return response


def _offered() -> tuple[AuthorizationRequest, str]:
    authz = page_authz()
    g.authz = authz
    return authz, str(page_origin().payload["sid"])


def _signed_in_user(authz: AuthorizationRequest, session_id: str) -> Any:
    found = login.live_session(tenant_id=authz.tenant_id, session_id=session_id)
    if found is None:
        raise Invalid(_("This sign-in has ended. Sign in again."), code="signin_restart")
    return found[0]


def _go_on(authz: AuthorizationRequest, session_id: str, *, skip: bool) -> Response:
    outcome = login.resume(request=authz, session_id=session_id, just_signed_in=True)
    assert outcome is not None
    response = _to_client(outcome, authz, 303)
    if skip:
        response.set_cookie(
            SKIP_COOKIE,
            "1",
            max_age=SKIP_SECONDS,
            path="/",
            secure=bool(current_app.config["LOGIN_COOKIE_SECURE"]),
            httponly=True,
            samesite="Lax",
        )
    return response


@blp.route("/authorize/passkey/offer/options", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_step(SIGNED_IN, "signed_in"))
def passkey_offer_options() -> Response:
    """WebAuthn options to create a passkey for the user who just signed in (JSON)"""
    authz, session_id = _offered()
    browser.check_csrf(request.form.get("csrf_token"))
    user = _signed_in_user(authz, session_id)
    ceremony = passkey_service.registration_options(user=user)
    return ceremony_answer(ceremony, "register", uid=user.id)


@blp.route("/authorize/passkey/offer", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_step(SIGNED_IN, "signed_in"))
def passkey_offer_submit() -> Response:
    """Add the passkey just created (or skip the offer), then go on to the app"""
    authz, session_id = _offered()
    show_form_on_error(
        "passkey_offer.html",
        app_name=application_name(authz),
        signed_in=request.form.get("signed_in"),
    )
    browser.check_csrf(request.form.get("csrf_token"))
    if "skip" in request.form:
        return _go_on(authz, session_id, skip=True)
    user = _signed_in_user(authz, session_id)
    passkey_service.register(
        user=user,
        credential=posted_credential(),
        challenge=ceremony_challenge("register", uid=user.id),
        name=request.form.get("name"),
        actor=f"user:{user.id}",
        ip=client_ip(),
    )
    return _go_on(authz, session_id, skip=False)
