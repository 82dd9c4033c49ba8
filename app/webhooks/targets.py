"""Which URLs a webhook may target, checked twice: when an endpoint is registered or changed
(the URL's form, and where its host resolves now) and at every send, after resolving the
host again; the send then connects to the very address that passed (delivery.py), so a DNS
answer that changes between the check and the connection (rebinding) gains nothing.

The rules are app/core/outbound.py's: production refuses plain http, and any host that
resolves to an address that is not globally routable (loopback, private, link-local, the
cloud metadata address among them). WEBHOOK_ALLOW_PRIVATE_TARGETS and WEBHOOK_ALLOW_HTTP
lift the two rules, for an on-premise receiver.
"""

from __future__ import annotations

from flask import current_app

from app.core.errors import Invalid
from app.core.outbound import MAX_URL_LENGTH, Target, resolve_checked
from app.core.outbound import OutboundRefused as TargetRefused

__all__ = ["MAX_URL_LENGTH", "Target", "TargetRefused", "check_url", "resolve"]


def check_url(url: str) -> str:
    """The URL if its form is acceptable and its host resolves to allowed addresses now;
    Invalid `invalid_webhook_url` otherwise (registration and updates)."""
    try:
        resolve(url)
    except TargetRefused as exc:
        raise Invalid(f"url: {exc}", code="invalid_webhook_url") from None
    return url


def resolve(url: str) -> Target:
    """Parse `url`, resolve its host and check every address it resolves to, under the
    webhook settings; TargetRefused."""
    return resolve_checked(
        url,
        allow_private=bool(current_app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"]),
        allow_http=bool(current_app.config["WEBHOOK_ALLOW_HTTP"]),
    )
