"""A tenant's look on the hosted pages (its `branding` setting): the display name, an
https logo, a support link, and a primary colour served as CSS custom properties from
`/hosted/branding/<tenant_id>.css` (the strict CSP allows no inline style).

A page knows its tenant from the authorization request it answers (`g.authz`) or, for
pages without one (the account pages), from `g.page_tenant`, which the route sets.
Values are checked again when they are used: only `#rrggbb` colours, https logos and
https or mailto support links reach a page; anything else is left out."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from flask import Response, abort, g, url_for
from sqlalchemy.exc import SQLAlchemyError

from app.api.auth import public
from app.api.hosted import blp
from app.core import security
from app.tenants import service as tenant_service

log = logging.getLogger(__name__)

COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
TENANT_ID = re.compile(r"[0-9a-f]{1,32}")
MAX_URL = 2048
MAX_NAME = 100
# A tenant's style sheet changes only with its colour, whose hash is in the link.
CSS_MAX_AGE = 3600


@dataclass(frozen=True)
class Branding:
    display_name: str | None = None
    logo_url: str | None = None
    support_url: str | None = None
    primary_color: str | None = None
    css_url: str | None = None


def _url(value: Any, schemes: tuple[str, ...]) -> str | None:
    if not isinstance(value, str) or len(value) > MAX_URL or any(c.isspace() for c in value):
        return None
    return value if value.lower().startswith(schemes) else None


def colour(value: Any) -> str | None:
    """A `#rrggbb` colour (lower case), or None for anything else."""
    return value.lower() if isinstance(value, str) and COLOUR.fullmatch(value) else None


def _luminance(hex_colour: str) -> float:
    """Relative luminance (WCAG 2.1)."""
    channels = []
    for i in (1, 3, 5):
        c = int(hex_colour[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g_, b = channels
    return 0.2126 * r + 0.7152 * g_ + 0.0722 * b


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two `#rrggbb` colours (1 to 21)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_colour(background: str) -> str:
    """White or black, whichever contrasts more with `background` (at least 4.58:1, so
    always WCAG AA for normal text)."""
    return (
        "#ffffff"
        if contrast(background, "#ffffff") >= contrast(background, "#000000")
        else "#000000"
    )


def of_settings(tenant_id: str, branding: dict[str, Any] | None) -> Branding:
    branding = branding or {}
    name = branding.get("display_name")
    name = name.strip()[:MAX_NAME] if isinstance(name, str) and name.strip() else None
    primary = colour(branding.get("primary_color"))
    css_url = None
    if primary is not None:
        version = security.sha256_hex(primary)[:8]
        css_url = url_for("hosted.branding_css", tenant_id=tenant_id, v=version)
    return Branding(
        display_name=name,
        logo_url=_url(branding.get("logo_url"), ("https://",)),
        support_url=_url(branding.get("support_url"), ("https://", "mailto:")),
        primary_color=primary,
        css_url=css_url,
    )


def _tenant_branding(tenant_id: str) -> dict[str, Any] | None:
    try:
        tenant = tenant_service.find_tenant(tenant_id)
    except SQLAlchemyError:  # an error page after a failed transaction: unbranded
        log.warning("branding not read: the database failed", exc_info=True)
        return None
    return None if tenant is None else dict(tenant.branding or {})


def page_tenant() -> str | None:
    """The tenant whose look the page being rendered takes."""
    tenant_id = g.get("page_tenant")
    if tenant_id is None and g.get("authz") is not None:
        tenant_id = getattr(g.authz, "tenant_id", None)
    return tenant_id if isinstance(tenant_id, str) and TENANT_ID.fullmatch(tenant_id) else None


def current() -> Branding | None:
    """The branding of this request's page (read once per request), or None."""
    tenant_id = page_tenant()
    if tenant_id is None:
        return None
    cached = g.get("page_branding")
    if cached is not None and cached[0] == tenant_id:
        return cached[1]
    settings = _tenant_branding(tenant_id)
    found = None if settings is None else of_settings(tenant_id, settings)
    g.page_branding = (tenant_id, found)
    return found


@blp.route("/hosted/branding/<tenant_id>.css", methods=["GET"])
@public
def branding_css(tenant_id: str) -> Response:
    """A tenant's colours as CSS custom properties (empty when it sets none)"""
    if not TENANT_ID.fullmatch(tenant_id):
        abort(404)
    settings = _tenant_branding(tenant_id)
    if settings is None:
        abort(404)
    primary = colour(settings.get("primary_color"))
    css = "/* no colours set */\n"
    if primary is not None:
        css = f":root {{\n  --primary: {primary};\n  --primary-text: {text_colour(primary)};\n}}\n"
    response = Response(css, mimetype="text/css")
    response.headers["Cache-Control"] = f"public, max-age={CSS_MAX_AGE}"
    return response
