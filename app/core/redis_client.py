"""The shared Redis client (when REDIS_URL is set) for small, fast buffers, and the breaker
its users share: when Redis fails, each use falls back to its own plan (write through,
per-process limits) and Redis is left alone for a few seconds, so requests never queue
up behind a dead server; the fall-back is logged once per outage, and so is the return.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from flask import Flask, current_app

log = logging.getLogger(__name__)
_EXTENSION = "gatehouse.redis"
TIMEOUT_SECONDS = 2
# After a failure, Redis is tried again at most this often (per process and purpose).
RETRY_AFTER_SECONDS = 5
# What "Redis is unavailable" looks like from redis-py (refused, reset, timed out, loading).
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class Breaker:
    """Tracks whether one use of Redis is failing, for one process."""

    def __init__(self, purpose: str, fallback: str) -> None:
        self.purpose = purpose
        self.fallback = fallback
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def should_try(self) -> bool:
        """False while Redis failed recently and the retry time has not come."""
        return self._down_since is None or time.monotonic() >= self._retry_at

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        log.warning("Redis unavailable (%s): %s", type(exc).__name__, self.fallback)

    def succeeded(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            outage, self._down_since = time.monotonic() - self._down_since, None
        log.warning("Redis is back after %.0f s: %s use Redis again", outage, self.purpose)


def init_redis_client(app: Flask) -> None:
    url = app.config["REDIS_URL"]
    app.extensions[_EXTENSION] = (
        redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        if url
        else None
    )


def client() -> redis.Redis | None:
    """The Redis client, or None in embedded mode."""
    return current_app.extensions.get(_EXTENSION)


def with_breaker(name: str, purpose: str, fallback: str) -> tuple[redis.Redis, Breaker] | None:
    """The Redis client and this process's breaker `name` (made on first use, saying
    `purpose` and `fallback` in its log lines), unless embedded or failing recently."""
    found = client()
    if found is None:
        return None
    breaker = current_app.extensions.get(name)
    if breaker is None:
        breaker = current_app.extensions[name] = Breaker(purpose, fallback)
    return (found, breaker) if breaker.should_try() else None
