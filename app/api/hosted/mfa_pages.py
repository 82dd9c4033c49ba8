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


def seal_second_factor(
    authz: AuthorizationRequest, user_id: str, generation: int, kinds: list[str] | tuple[str, ...]
) -> str:
    """A single-use sealed second-factor step, bound to the user's session generation and
    naming the second factors the user has (the page offers those)."""
    pending = {"authz": authz.as_dict(), "uid": user_id, "gen": generation, "kinds": list(kinds)}
    return browser.seal(SECOND_FACTOR, pending, once=True)


def second_factor_context(
    *, app_name: str, pending: str, kinds: list[str] | tuple[str, ...], method: str = CODE
) -> dict[str, Any]:
    """The second-factor page: the TOTP code form (when the user has a TOTP) or the
    recovery-code form (`method=recovery`, or no TOTP), the link between them, Cancel."""
    if "totp" not in kinds:
        method = RECOVERY if method == RECOVERY else "other"
    return {"app_name": app_name, "pending": pending, "kinds": list(kinds), "method": method}


def seal_enrolment(authz: AuthorizationRequest, user_id: str, generation: int) -> str:
    """A sealed enrolment step (not single-use: a wrong code shows the same QR code
    again; the code itself is checked once per time-step and rate-limited)."""
    return browser.seal(ENROL, {"authz": authz.as_dict(), "uid": user_id, "gen": generation})


def enrolment_context(*, app_name: str, pending: str, secret: str, uri: str) -> dict[str, Any]:
    return {"app_name": app_name, "pending": pending, **setup_context(secret, uri)}
