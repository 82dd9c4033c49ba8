"""Pieces of the two-step verification pages shared by the login flow (routes.py, and
mfa_routes.py) and the account's MFA page: the QR code of a TOTP secret as inline SVG
(segno; no script, no data: URI, so the strict CSP holds), the secret grouped for reading,
and the sealed states of the second-factor and enrolment steps."""

from __future__ import annotations

from typing import Any

import segno
from flask_babel import gettext as _

from app.api.hosted import browser
from app.applications.authorization import AuthorizationRequest
from app.federation.service import PendingLink

SECOND_FACTOR = "second-factor"
ENROL = "mfa-enrol"
CODE = "code"
RECOVERY = "recovery"


def qr_svg(uri: str) -> str:
    """The otpauth URI as an inline <svg> (dark modules on a white square, whatever the
    page's colours, so a phone can read it in dark mode too)."""
    qr = segno.make(uri, error="m")
    return qr.svg_inline(
        scale=5,
        border=4,
        dark="#000",
        light="#fff",
        svgclass="qr",
        lineclass=None,
        title=_("QR code for your authenticator app"),
    )


def grouped(secret: str) -> str:
    """A base32 secret in groups of four characters, for reading and typing."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def setup_context(secret: str, uri: str) -> dict[str, Any]:
    """What the `_totp_setup.html` partial shows."""
    return {"qr_svg": qr_svg(uri), "secret_grouped": grouped(secret)}


def first_factor(*, via: str | None = None, link: PendingLink | None = None) -> dict[str, Any]:
    """What a sealed step carries about the sign-in's first factor: `via`, the connection
    it came through (no password), and `link`, the upstream identity to link once the
    sign-in completes (sealed: the browser never chooses it)."""
    found: dict[str, Any] = {}
    if via:
        found["via"] = via
    if link is not None:
        found["link"] = link.as_dict()
    return found


def carried(pending: dict[str, Any]) -> dict[str, Any]:
    """The first_factor() part of a sealed step's payload (to seal it into the next)."""
    return {key: pending[key] for key in ("via", "link") if key in pending}


def step_first_factor(pending: dict[str, Any]) -> dict[str, Any]:
    """The first_factor() a sealed step carries, as keyword arguments of the login steps
    (via=…, link=PendingLink)."""
    found: dict[str, Any] = {}
    if pending.get("via"):
        found["via"] = str(pending["via"])
    if isinstance(pending.get("link"), dict):
        found["link"] = PendingLink.from_dict(pending["link"])
    return found


def seal_second_factor(
    authz: AuthorizationRequest,
    user_id: str,
    generation: int,
    kinds: list[str] | tuple[str, ...],
    first: dict[str, Any] | None = None,
) -> str:
    """A single-use sealed second-factor step, bound to the user's session generation and
    naming the second factors the user has (the page offers those), and what `first`
    (first_factor()) says about the first."""
    pending = {"authz": authz.as_dict(), "uid": user_id, "gen": generation, "kinds": list(kinds)}
    return browser.seal(SECOND_FACTOR, {**pending, **(first or {})}, once=True)


def second_factor_context(
    *, app_name: str, pending: str, kinds: list[str] | tuple[str, ...], method: str = CODE
) -> dict[str, Any]:
    """The second-factor page: the TOTP code form (when the user has a TOTP) or the
    recovery-code form (`method=recovery`, or no TOTP), the link between them, Cancel."""
    if "totp" not in kinds:
        method = RECOVERY if method == RECOVERY else "other"
    return {"app_name": app_name, "pending": pending, "kinds": list(kinds), "method": method}


def seal_enrolment(
    authz: AuthorizationRequest,
    user_id: str,
    generation: int,
    first: dict[str, Any] | None = None,
) -> str:
    """A sealed enrolment step (not single-use: a wrong code shows the same QR code
    again; the code itself is checked once per time-step and rate-limited), with
    `first` as seal_second_factor's."""
    pending = {"authz": authz.as_dict(), "uid": user_id, "gen": generation}
    return browser.seal(ENROL, {**pending, **(first or {})})


def enrolment_context(*, app_name: str, pending: str, secret: str, uri: str) -> dict[str, Any]:
    return {"app_name": app_name, "pending": pending, **setup_context(secret, uri)}
