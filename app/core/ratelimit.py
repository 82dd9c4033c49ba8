"""Rate limits with the `limits` library (Flask-Limiter's engine): Redis storage when
REDIS_URL is set, memory otherwise. Limits are configuration strings like
`10 per minute`; a breach raises RateLimited with Retry-After and x-ratelimit-* headers.

Flask-Limiter itself keeps its storage on one extension object and checks every request
in a before_request hook; our limits are keyed on body fields (the username) and only a
few endpoints need them, so the edge calls `check()` directly.

While Redis is unavailable the limits are counted in this process's memory instead (as
Flask-Limiter's `in_memory_fallback` does): each process then allows the full limit, so a
deployment of N processes allows up to N times as much, but sign-in never fails and is
never unlimited. The switch is logged once each way.
"""

from __future__ import annotations

import math
import time

from flask import Flask, current_app
from limits import RateLimitItem, WindowStats, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.core import kv
from app.core.errors import RateLimited

_EXTENSION = "gatehouse.ratelimits"


class RateLimits:
    def __init__(self, storage_uri: str, enabled: bool, key_prefix: str) -> None:
        self.enabled = enabled
        self.storage: Storage
        self.fallback: FixedWindowRateLimiter | None = None
        if storage_uri.startswith("redis"):
            self.storage = storage_from_string(
                storage_uri,
                key_prefix=key_prefix,
                socket_timeout=kv.TIMEOUT_SECONDS,
                socket_connect_timeout=kv.TIMEOUT_SECONDS,
            )
            self.fallback = FixedWindowRateLimiter(MemoryStorage())
        else:
            self.storage = storage_from_string(storage_uri)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.breaker = kv.Breaker(
            "rate limits", "rate limits fall back to per-process memory until it returns"
        )

    def _hit(self, item: RateLimitItem, *keys: str) -> tuple[bool, FixedWindowRateLimiter]:
        """Count the hit in Redis, or in memory while Redis fails; (allowed, limiter used)."""
        if self.fallback is not None and not self.breaker.should_try():
            return self.fallback.hit(item, *keys), self.fallback
        try:
            allowed = self.limiter.hit(item, *keys)
        except self.storage.base_exceptions as exc:
            if self.fallback is None:
                raise
            self.breaker.failed(exc)
            return self.fallback.hit(item, *keys), self.fallback
        self.breaker.succeeded()
        return allowed, self.limiter

    def check(self, setting: str, limit_text: str, *identity: str) -> None:
        """Count one hit against `limit_text` for this identity; RateLimited when over."""
        if not self.enabled:
            return
        item = parse(limit_text)
        allowed, limiter = self._hit(item, setting, *identity)
        if allowed:
            return
        try:
            stats = limiter.get_window_stats(item, setting, *identity)
        except self.storage.base_exceptions:  # Redis went away between the two calls
            stats = WindowStats(time.time() + item.get_expiry(), 0)
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
        if self.fallback is not None:
            self.fallback.storage.reset()


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
