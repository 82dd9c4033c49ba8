"""The admin console (`/console`, issue 28): server-rendered pages for a tenant's
administrators and support staff, who sign in through Gatehouse's own hosted login as an
OIDC client of it (edge.py, routes.py). No script at all: plain forms with a CSRF token,
under a strict Content-Security-Policy; every page forbids framing and caching.

A page is a view decorated `@public(tenant_from=console_tenant)` then
`@console_view(action=…)` (edge.py), rendered with `page()`; it goes into the menu by a
line in NAV."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, g, render_template
from werkzeug.exceptions import HTTPException

from app.api.hosted import browser, with_error_headers
from app.core.errors import AppError, to_app_error

log = logging.getLogger(__name__)

blp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class NavItem:
    """One entry of the console's menu: its label, its view's endpoint, and the action
    (edge.console_view's) a member needs to see it."""

    label: str
    endpoint: str
    action: str = "read"


# The menu, in order. The pages still to come (issue 28): Users, Audit log, Settings: each
# adds its line here.
NAV: list[NavItem] = [
    NavItem("Dashboard", "console.dashboard"),
    NavItem("Users", "console.users"),
    NavItem("Applications", "console.applications"),
    NavItem("API keys", "console.api_keys"),
    NavItem("Webhooks", "console.webhooks"),
    NavItem("Connections", "console.connections"),
    NavItem("Members", "console.members"),
]


@dataclass
class FormOnScreen:
    """The page a POST answers, so that a refused action shows it again with the reason
    (its context is plain data, read before the action: the error page renders after
    the request's transaction and tenant scope have ended)."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)


def show_form_on_error(template: str, **context: Any) -> None:
    g.console_form = FormOnScreen(template, context)


def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render a console page: the layout's member, tenant and menu, the CSRF token."""
    console = g.get("console")
    nav = [item for item in NAV if console is not None and console.may(item.action)]
    html = render_template(
        f"console/{template}",
        console=console,
        nav=nav,
        csrf_token=browser.csrf_token(),
        **context,
    )
    return Response(html, status=status, mimetype="text/html")


@blp.errorhandler(Exception)
def render_error_page(exc: Exception) -> Response:
    err = to_app_error(exc)
    if err.status >= 500 and not isinstance(exc, AppError | HTTPException):
        log.error("console page failed: %s", type(exc).__name__, exc_info=exc)
    form: FormOnScreen | None = g.get("console_form")
    if form is not None and err.status < 500 and err.code != "console_action_refused":
        # The fields' own messages go next to their fields (aria-describedby).
        response = page(
            form.template,
            err.status,
            error=err.message,
            error_code=err.code,
            error_fields=err.fields or {},
            **form.context,
        )
    else:
        response = page("error.html", err.status, message=err.message, code=err.code)
    return with_error_headers(response, err)


@blp.after_request
def page_headers(response: Response) -> Response:
    return browser.finish_page(response, SECURITY_HEADERS)


# Importing the route modules registers their routes on blp (after blp exists).
from app.api.console import (  # noqa: E402
    application_routes,  # noqa: F401  (/console/applications)
    connection_routes,  # noqa: F401  (/console/connections)
    key_routes,  # noqa: F401  (/console/api-keys)
    member_routes,  # noqa: F401  (/console/members)
    routes,  # noqa: F401  (sign-in, callback, sign-out, the dashboard)
    user_actions,  # noqa: F401  (/console/users/<id>/…: block, delete, MFA, sessions, …)
    user_routes,  # noqa: F401  (/console/users: search, a user's page)
    webhook_routes,  # noqa: F401  (/console/webhooks)
)

__all__ = ["NAV", "NavItem", "blp", "page"]
