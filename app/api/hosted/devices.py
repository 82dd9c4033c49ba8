"""A short name for the device a session began on ("Chrome on Linux"), read from its
User-Agent: a few patterns, enough for a person to recognise a session, not a census."""

from __future__ import annotations

import re

from flask_babel import gettext as _

# First match wins: Edge and Opera also say Chrome, Chrome also says Safari.
_BROWSERS = (
    (re.compile(r"\bEdg(e|A|iOS)?/"), "Edge"),
    (re.compile(r"\b(OPR|Opera)/"), "Opera"),
    (re.compile(r"\b(Firefox|FxiOS)/"), "Firefox"),
    (re.compile(r"\b(HeadlessChrome|Chrome|Chromium|CriOS)/"), "Chrome"),
    (re.compile(r"\bVersion/[\d.]+.*\bSafari/"), "Safari"),
)
# Android and ChromeOS also say Linux; iOS also says Mac OS X.
_SYSTEMS = (
    (re.compile(r"\bWindows\b"), "Windows"),
    (re.compile(r"\bAndroid\b"), "Android"),
    (re.compile(r"\b(iPhone|iPad|iPod)\b"), "iOS"),
    (re.compile(r"\bCrOS\b"), "ChromeOS"),
    (re.compile(r"\bMac OS X\b|\bMacintosh\b"), "macOS"),
    (re.compile(r"\bLinux\b"), "Linux"),
)
# A program's own product token ("curl/8.5.0", "python-requests/2.32"): its name.
_PRODUCT = re.compile(r"([A-Za-z][A-Za-z0-9._-]{0,30})/[\w.]+")


def _first(patterns: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str | None:
    return next((name for pattern, name in patterns if pattern.search(text)), None)


def parse(user_agent: str | None) -> tuple[str | None, str | None]:
    """(browser, operating system) of a User-Agent, each None when not recognised; a
    program that is no browser is named by its product token."""
    if not user_agent:
        return None, None
    browser = _first(_BROWSERS, user_agent)
    system = _first(_SYSTEMS, user_agent)
    if browser is None and not user_agent.startswith("Mozilla/"):
        product = _PRODUCT.match(user_agent)
        browser = product.group(1) if product else None
    return browser, system


def describe(user_agent: str | None) -> str:
    """ "Chrome on Linux", "Firefox", "Windows", or "Unknown device"."""
    browser, system = parse(user_agent)
    if browser and system:
        return _("%(browser)s on %(system)s", browser=browser, system=system)
    return browser or system or _("Unknown device")
