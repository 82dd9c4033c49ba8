"""Routes of a sign-in through another identity provider (issue 27): the login page's
button per connection, `/authorize?connection=NAME` (routes.authorize sends it here), and
the provider's way back, `GET /login/callback` (Auth0's path: the redirect URI to register
upstream is `{ISSUER}/login/callback`). What the provider did wrong, or refused, reaches
the app as an OAuth error on its redirect URI, never as a 500.

When the provider's address belongs to an account here and linking is not automatic
(the address is not verified on both sides), the callback shows the link page: the user
signs in to that account with its password (and its second factor, the usual steps) and
the provider's identity, sealed into the page, is linked to it (`POST /login/link`). An
account without a password (it signs in through another provider only) cannot prove it
is the user's here: the page says so and nothing is linked."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, redirect, request
from flask_babel import gettext as _

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, mfa_pages, page, show_form_on_error
from app.api.hosted.edge import (
    federated_sign_in,
    in_page_tenant,
    page_authz,
    page_origin,
    sealed_request,
    sealed_step,
)
from app.api.hosted.forms import PasswordForm, load_form
from app.api.hosted.routes import (
    AUTHORIZE,
    application_name,
    complete_sign_in,
    second_factor_page,
)
from app.applications import authorization, login
from app.applications.authorization import AuthorizationError, AuthorizationRequest
from app.core.errors import Conflict, Invalid
from app.core.http import accepts_form
from app.federation import service as federation_service
from app.federation.service import LinkRequired, NoPasswordToLink, PendingLink
from app.federation.upstream import FederationError

LINK = "federation-link"  # the link page's sealed step (the app's request, the identity)


def callback_uri() -> str:
    """The redirect URI registered at every provider: `{ISSUER}/login/callback`."""
    return str(current_app.config["ISSUER"]).rstrip("/") + "/login/callback"


def _to_app(authz: AuthorizationRequest, err: FederationError) -> AuthorizationError:
    return AuthorizationError(
        err.error, err.description, redirect_uri=authz.redirect_uri, state=authz.state
    )


def go_upstream(authz: AuthorizationRequest, name: str) -> Response:
    """Send the browser to connection `name`'s provider for this request; an unknown
    name, or one not enabled for the app, is an invalid_request for the app."""
    connection = federation_service.find_enabled(authz.client_id, name[:128])
    if connection is None:
        raise AuthorizationError(
            "invalid_request",
            "The connection is not known or not enabled for this application",
            redirect_uri=authz.redirect_uri,
            state=authz.state,
        )
    try:
        started = federation_service.start(
            connection=connection, carry=authz.as_dict(), redirect_uri=callback_uri()
        )
    except FederationError as err:
        raise _to_app(authz, err) from err
    response: Response = redirect(started.url, code=302)  # type: ignore[assignment]
    browser.keep_federation(response, started.pending, federation_service.PENDING_TTL_SECONDS)
    return response


@blp.route("/authorize/connection", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_request(AUTHORIZE, "authz"))
def connection_submit() -> Response:
    """Sign in with another provider (the login page's button for a connection)"""
    authz = page_authz()
    g.authz = authz
    browser.check_csrf(request.form.get("csrf_token"))
    return go_upstream(authz, request.form.get("connection", ""))


@blp.route("/login/callback", methods=["GET"])
@public
@in_page_tenant(from_=federated_sign_in)
def federation_callback() -> Response:
    """The identity provider's answer to a sign-in started here"""
    origin = page_origin()
    if origin.authz is None:
        raise Invalid(
            _(
                "This sign-in took too long or was started in another browser. Go back to "
                "the app and try again."
            ),
            code="form_expired",
        )
    authz = page_authz()
    g.authz = authz
    pending = origin.payload["pending"]
    params = {key: value[:2048] for key, value in request.args.items()}
    try:
        connection, user = federation_service.finish(
            pending=pending, params=params, redirect_uri=callback_uri(), ip=client_ip()
        )
    except LinkRequired as err:
        # Never a silent second account: the user signs in to the one they have, to link.
        response = page("link_account.html", **_link_context(authz, err.pending))
        browser.forget_federation(response)
        return response
    except NoPasswordToLink as err:
        message = _(
            "An account with this email address already exists, but it has no password to "
            "sign in with here, so this provider cannot be linked to it. Sign in the way "
            "you did before."
        )
        raise Conflict(message, code="account_exists_no_password") from err
    except FederationError as err:
        raise _to_app(authz, err) from err
    outcome = login.federated_step(
        request=authz,
        user=user,
        connection_name=connection.name,
        ip=client_ip(),
        user_agent=request.user_agent.string,
    )
    response = _next_step(outcome, authz, mfa_pages.first_factor(via=connection.name))
    browser.forget_federation(response)
    return response


def _next_step(
    outcome: login.Outcome, authz: AuthorizationRequest, first: dict[str, Any]
) -> Response:
    """The page after a first factor: the TOTP enrolment (MFA required, none enrolled),
    the second factor, or on to the app; the steps carry `first` (how the first factor
    was given, the identity to link)."""
    if outcome.enrolment is not None:
        assert outcome.pending_user is not None
        sealed = mfa_pages.seal_enrolment(
            authz, outcome.pending_user, outcome.pending_generation, first
        )
        context = mfa_pages.enrolment_context(
            app_name=application_name(authz),
            pending=sealed,
            secret=outcome.enrolment.secret,
            uri=outcome.enrolment.uri,
        )
        return page("mfa_enrol.html", **context)
    if outcome.pending_user is not None:
        context = second_factor_page(
            authz,
            outcome.pending_user,
            outcome.pending_generation,
            outcome.pending_kinds,
            first=first,
        )
        return page("second_factor.html", **context)
    return complete_sign_in(outcome, authz)


def _connection_label(pending: PendingLink) -> str:
    connection = federation_service.connection_by_id(pending.connection_id)
    if connection is None:
        return pending.connection_name
    return connection.display_name or connection.name


def _link_context(
    authz: AuthorizationRequest, pending: PendingLink, sealed: str | None = None
) -> dict[str, Any]:
    """The link page: the provider, the address of the account to sign in to, the sealed
    step (the app's request and the identity to link)."""
    if sealed is None:
        sealed = browser.seal(LINK, {"authz": authz.as_dict(), "link": pending.as_dict()})
    return {
        "app_name": application_name(authz),
        "provider": _connection_label(pending),
        "email": pending.email,
        "link": sealed,
        "authz": browser.seal(AUTHORIZE, authz.as_dict()),
    }


@blp.route("/login/link", methods=["POST"])
@accepts_form
@public
@in_page_tenant(from_=sealed_step(LINK, "link"))
def link_submit() -> Response:
    """Sign in to the account with the provider's address, to link the provider to it"""
    origin, authz = page_origin(), page_authz()
    g.authz = authz
    pending = PendingLink.from_dict(origin.payload["link"])
    show_form_on_error(
        "link_account.html", **_link_context(authz, pending, request.form.get("link"))
    )
    browser.check_csrf(request.form.get("csrf_token"))
    if "cancel" in request.form:
        raise authorization.access_denied(authz)
    form = load_form(PasswordForm(), "Enter your password.")
    # The address that signs in is the sealed one: the browser picks no other account.
    outcome = login.password_step(
        request=authz,
        login=pending.email,
        password=form["password"],
        ip=client_ip(),
        user_agent=request.user_agent.string,
        by_email=True,
        link=pending,
    )
    return _next_step(outcome, authz, mfa_pages.first_factor(link=pending))
