"""The hosted pages (`/authorize`, `/logout`, `/verify-email`): server-rendered HTML for
people, not an API, so they stay out of the OpenAPI document and answer errors as pages.

An error of the authorization request that the client must learn goes to its redirect
URI (RFC 6749 §4.1.2.1); an error while a form is on screen shows that form again with
the message; anything else is an error page. Every page forbids framing and caching.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, g, redirect, render_template
from flask_babel import get_locale, gettext
from flask_babel import refresh as refresh_locale
from werkzeug.exceptions import HTTPException

from app.api.hosted import browser
from app.applications.authorization import AuthorizationError, server_failure
from app.core.errors import AppError, to_app_error

log = logging.getLogger(__name__)

blp = Blueprint(
    "hosted",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/hosted/static",
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        # No form-action: a form's POST may redirect to the app's redirect URI. Logos
        # come from the tenant's https host; page scripts post JSON to this origin only.
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class FormOnScreen:
    """The form a request is answering, so that an error shows it again."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)


def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render a page of this surface (with the CSRF token its forms need), in the
    request's language (app.core.i18n) and with the look of its tenant: the one of
    `g.authz`, or `g.page_tenant` when a route sets it (hosted.branding)."""
    refresh_locale()  # chosen again now that the route may have set g.authz
    brand = branding.current()
    html = render_template(
        f"hosted/{template}",
        csrf_token=browser.csrf_token(),
        page_lang=str(get_locale() or "en"),
        brand=brand,
        brand_name=(brand.display_name if brand else None) or "Gatehouse",
        **context,
    )
    return Response(html, status=status, mimetype="text/html")


def page_message(err: AppError) -> str:
    """An error's message in the page's language: the catalogue's translation of its
    English text (hosted.messages lists the domain's ones; others stay English)."""
    refresh_locale()
    if err.code == "second_factor_locked":
        minutes = messages.retry_minutes(err.headers.get("Retry-After"))
        if minutes is not None:
            return messages.second_factor_locked(minutes)
    return gettext(err.message) if err.message else err.message


def show_form_on_error(template: str, **context: Any) -> None:
    g.form_on_screen = FormOnScreen(template, context)


@blp.errorhandler(Exception)
def render_error_page(exc: Exception) -> Response:
    if isinstance(exc, AuthorizationError):
        return redirect(exc.location, code=302)  # type: ignore[return-value]
    err = to_app_error(exc)
    if err.status >= 500 and not isinstance(exc, AppError | HTTPException):
        log.error("hosted page failed: %s", type(exc).__name__, exc_info=exc)
    authz = g.get("authz")
    if authz is not None and err.status >= 500:
        return redirect(server_failure(authz, err.status).location, code=302)  # type: ignore[return-value]
    form: FormOnScreen | None = g.get("form_on_screen")
    if form is not None and err.status < 500:
        response = page(
            form.template, err.status, error=page_message(err), error_code=err.code, **form.context
        )
    else:
        response = page("error.html", err.status, message=page_message(err), code=err.code)
    return with_error_headers(response, err)


def with_error_headers(response: Response, err: AppError) -> Response:
    """An error page with the error's headers (Retry-After), but no WWW-Authenticate: a
    page is no API challenge."""
    for name, value in err.headers.items():
        if name != "WWW-Authenticate":
            response.headers[name] = value
    return response


@blp.after_request
def page_headers(response: Response) -> Response:
    return browser.finish_page(response, SECURITY_HEADERS)


# Importing the route modules registers their routes on blp (after blp exists).
from app.api.hosted import (  # noqa: E402
    account_passkey_routes,  # noqa: F401  (/account/passkeys)
    account_routes,  # noqa: F401  (/account and its pages)
    account_signin,  # noqa: F401  (the account pages' sign-in and "confirm it's you")
    branding,  # noqa: F401  (the tenant's style sheet)
    federation_routes,  # noqa: F401  (sign in with another provider, /login/callback)
    messages,  # noqa: F401  (the service messages pages translate)
    mfa_routes,  # noqa: F401  (two-step verification, recovery codes, /account/mfa)
    passkey_routes,  # noqa: F401  (passkey sign-in, second factor and offer)
    routes,  # noqa: F401  (login, second factor, logout)
    signup_routes,  # noqa: F401  (sign-up, verify-email, forgot and reset password)
)

__all__ = ["blp"]
