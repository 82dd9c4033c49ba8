"""Routes of a sign-in through another identity provider (issue 27): the login page's
button per connection, `/authorize?connection=NAME` (routes.authorize sends it here), and
the provider's way back, `GET /login/callback` (Auth0's path: the redirect URI to register
upstream is `{ISSUER}/login/callback`). What the provider did wrong, or refused, reaches
the app as an OAuth error on its redirect URI, never as a 500."""

from __future__ import annotations

from flask import Response, current_app, g, redirect, request
from flask_babel import gettext as _

from app.api.auth import client_ip, public
from app.api.hosted import blp, browser, mfa_pages, page
from app.api.hosted.edge import (
    federated_sign_in,
    in_page_tenant,
    page_authz,
    page_origin,
    sealed_request,
)
from app.applications import login
from app.applications.authorization import AuthorizationError, AuthorizationRequest
from app.core.errors import Conflict, Invalid
from app.core.http import accepts_form
from app.federation import service as federation_service
from app.federation.service import LinkRequired
from app.federation.upstream import FederationError

AUTHORIZE = "authorize-request"  # routes.AUTHORIZE: the login page's sealed request


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
        # Never a silent second account: the user signs in with the one they have.
        message = _(
            "An account with this email address already exists. Sign in with it (your "
            "password) to continue; it is not linked to this provider automatically "
            "because the address is not verified on both sides."
        )
        raise Conflict(message, code="account_exists") from err
    except FederationError as err:
        raise _to_app(authz, err) from err
    outcome = login.federated_step(
        request=authz,
        user=user,
        connection_name=connection.name,
        ip=client_ip(),
        user_agent=request.user_agent.string,
    )
    from app.api.hosted import routes  # imports this module

    if outcome.enrolment is not None:
        assert outcome.pending_user is not None
        sealed = mfa_pages.seal_enrolment(authz, outcome.pending_user, outcome.pending_generation)
        context = mfa_pages.enrolment_context(
            app_name=routes.application_name(authz),
            pending=sealed,
            secret=outcome.enrolment.secret,
            uri=outcome.enrolment.uri,
        )
        response = page("mfa_enrol.html", **context)
    elif outcome.pending_user is not None:
        context = routes.second_factor_page(
            authz, outcome.pending_user, outcome.pending_generation, outcome.pending_kinds
        )
        response = page("second_factor.html", **context)
    else:
        response = routes.complete_sign_in(outcome, authz)
    browser.forget_federation(response)
    return response
