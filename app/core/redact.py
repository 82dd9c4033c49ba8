"""Credentials kept out of log lines (SPEC §8: no log line, in any format, holds a token,
code, hint, password or email taken from a URL).

Query parameters are redacted by name (a deny list, plus names ending in `token`,
`secret`, `password`, `_hint` or `code`), and any value shaped like a JWT, an API key, an
email address or a password hash is redacted wherever it appears (a path, a Referer, a
message). Used by gunicorn's access and error logs (app/core/accesslog.py), the
development server's log and every handler of ours (app/core/logs.py).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

REDACTED = "[redacted]"

SENSITIVE_PARAMETERS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "assertion",
        # the hosted self-service links' sealed authorization request (its state, nonce
        # and login_hint, signed but readable)
        "authz",
        "client_assertion",
        "client_secret",
        "code",
        "code_verifier",
        "custom_password_hash",
        "email",
        "id_token",
        "id_token_hint",
        "key",
        "login_hint",
        "new_password",
        "nonce",
        "otp",
        "password",
        "password_hash",
        "passwordhash",
        "refresh_token",
        "secret",
        "session_state",
        "sig",
        "signature",
        "state",
        "token",
        "x-api-key",
        "x-apikey",
    }
)
_SENSITIVE_SUFFIXES = ("token", "secret", "password", "_hint", "code")

# name=value after `?`, `&` or `;`, up to the next separator, quote or blank.
_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s\"'?]+)=(?P<value>[^&;#\s\"']*)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){1,3}")
_API_KEY = re.compile(r"\bgh_(?:root_)?[A-Za-z0-9]+_[A-Za-z0-9_-]{8,}")
# Password hashes wherever they appear (issue 24: an imported hash is never logged): ours
# and every imported format's self-describing string (bcrypt, argon2, PHC pbkdf2, our
# `$gh-foreign$` records, Django's pbkdf2, LDAP `{SSHA}`…).
_PASSWORD_HASH = re.compile(  # also URL-encoded ($ as %24, { } as %7B %7D)
    r"(?:\$|%24)(?:2[abxy]|argon2(?:id|i|d)|pbkdf2[\w-]*|gh-foreign|scrypt)(?:\$|%24)[\w$%.,=/+-]+"
    r"|\bpbkdf2_sha(?:1|256)(?:\$|%24)[\w$%.,=/+-]+"
    r"|(?:\{|%7B)S?(?:SHA(?:256|384|512)?|MD5)(?:\}|%7D)[A-Za-z0-9+/=%]+",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def sensitive_parameter(name: str) -> bool:
    """Whether a query parameter of this name carries a credential, code, hint or email."""
    folded = unquote(name).strip().lower()
    return folded in SENSITIVE_PARAMETERS or folded.endswith(_SENSITIVE_SUFFIXES)


def _parameter(match: re.Match[str]) -> str:
    if not match["value"] or not sensitive_parameter(match["name"]):
        return match[0]
    return f"{match['lead']}{match['name']}={REDACTED}"


def redact_text(text: str) -> str:
    """`text` with sensitive query values and JWT-, API-key- and email-shaped values
    replaced by `[redacted]`; text without any is returned as it is."""
    if "=" in text:
        text = _PARAMETER.sub(_parameter, text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "gh_" in text:
        text = _API_KEY.sub(REDACTED, text)
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(REDACTED, text)
    if "$" in text or "}" in text or "%" in text:
        text = _PASSWORD_HASH.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record whose message holds something `redact_text` removes: the message
    is formatted once, redacted, and kept without its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# One instance, so adding it twice to a logger or handler is a no-op (logging compares).
REDACTING_FILTER = RedactingFilter()
