"""The language of the hosted pages and of the mails a request sends (Flask-Babel's
locale selector, bound in create_app).

The first supported language of: the authorization request's `ui_locales` (OIDC Core
§3.1.2.1; a hosted route puts the request on `g.authz`, and the sealed request carries
it from one step of a flow to the next), a `ui_locales` query parameter, the browser's
`Accept-Language`; else English. Outside a request (a task, the CLI), English."""

from __future__ import annotations

from flask import g, has_request_context, request
from flask_babel import refresh

SUPPORTED = ("en", "de", "fr")
DEFAULT = "en"
# A bound on what is read of a client-chosen list.
MAX_UI_LOCALES = 10


def _first_supported(ui_locales: str | None) -> str | None:
    """The first language of a space-separated `ui_locales` list (BCP 47 tags, `de-CH`
    counts as `de`) that the pages speak."""
    for tag in (ui_locales or "").split()[:MAX_UI_LOCALES]:
        language = tag.replace("_", "-").split("-")[0].lower()
        if language in SUPPORTED:
            return language
    return None


def select_locale() -> str:
    if not has_request_context():
        return DEFAULT
    authz = g.get("authz")
    chosen = _first_supported(getattr(authz, "ui_locales", None))
    if chosen is None:
        chosen = _first_supported(request.args.get("ui_locales"))
    if chosen is None:
        chosen = request.accept_languages.best_match(SUPPORTED)
    return chosen or DEFAULT


def reselect() -> None:
    """Choose the language again before writing a text that must follow the request (a
    mail): Flask-Babel keeps the first choice of a request, which may predate the route
    learning the authorization request's ui_locales."""
    if has_request_context():
        refresh()
