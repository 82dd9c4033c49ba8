"""Rate limits with the `limits` library (Flask-Limiter's engine): Redis storage when
REDIS_URL is set, memory otherwise. Limits are configuration strings like
`10 per minute`; a breach raises RateLimited with Retry-After and x-ratelimit-* headers.

Flask-Limiter itself keeps its storage on one extension object and checks every request
in a before_request hook; our limits are keyed on body fields (the username) and only a
few endpoints need them, so the edge calls `check()` directly.
"""

from __future__ import annotations

import math
import time

from flask import Flask, current_app
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.core.errors import RateLimited

_EXTENSION = "gatehouse.ratelimits"


class RateLimits:
    def __init__(self, storage_uri: str, enabled: bool, key_prefix: str) -> None:
        self.enabled = enabled
        options = {"key_prefix": key_prefix} if storage_uri.startswith("redis") else {}
        self.storage = storage_from_string(storage_uri, **options)
        self.limiter = FixedWindowRateLimiter(self.storage)

    def check(self, setting: str, limit_text: str, *identity: str) -> None:
        """Count one hit against `limit_text` for this identity; RateLimited when over."""
        if not self.enabled:
            return
        item = parse(limit_text)
        if self.limiter.hit(item, setting, *identity):
            return
        stats = self.limiter.get_window_stats(item, setting, *identity)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            "Too many requests; try again later",
            headers={
                "Retry-After": str(retry_after),
                "x-ratelimit-limit": str(item.amount),
                "x-ratelimit-remaining": str(stats.remaining),
                "x-ratelimit-reset": str(int(stats.reset_time)),
            },
        )

    def reset(self) -> None:
        self.storage.reset()


def init_rate_limits(app: Flask) -> RateLimits:
    storage_uri = app.config["REDIS_URL"] or "memory://"
    limits = RateLimits(
        storage_uri, app.config["RATELIMIT_ENABLED"], f"{app.config['REDIS_KEY_PREFIX']}:limits"
    )
    app.extensions[_EXTENSION] = limits
    return limits


def check(setting: str, *identity: str) -> None:
    """Apply the limit named by config `setting` (e.g. RATELIMIT_SIGNIN_PER_IP)."""
    limits: RateLimits = current_app.extensions[_EXTENSION]
    limits.check(setting, current_app.config[setting], *identity)


def login_keys(*identifiers: str | None) -> list[str]:
    """The distinct, case-folded identifiers a request names (username, email): a limit
    keyed on a login counts against every one of them, so pairing the real address with
    a fresh username each time cannot dodge it."""
    return sorted({value.casefold() for value in identifiers if value})


def check_each(setting: str, scope: str, identifiers: list[str], *extra: str) -> None:
    """Apply the limit `setting` to each identifier (within `scope`, e.g. a tenant)."""
    for identifier in identifiers:
        check(setting, scope, identifier, *extra)
