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

Two more shapes live here, with the same storage and fall-back: a back-off budget (so
many failures, then a lock that doubles with each further lock; an attempt is counted
before it is checked, so concurrent attempts cannot overrun it), and single-use claims
(a value accepted once, e.g. the nonce of a form). Neither is turned off by
RATELIMIT_ENABLED: they are security controls, not load limits.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, current_app
from limits import RateLimitItem, WindowStats, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.core import redis_client
from app.core.errors import RateLimited

_EXTENSION = "gatehouse.ratelimits"
# One attempt against a back-off budget, atomically (Redis time, so every process agrees):
# 0 when it may be checked, else the seconds the lock still holds. The attempt that uses
# up the budget starts the lock (it is still checked); success forgets the budget.
_ATTEMPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local locked = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if locked > now then
  return math.ceil(locked - now)
end
local ttl = tonumber(ARGV[4])
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[1]) then
  local level = redis.call('HINCRBY', KEYS[1], 'level', 1)
  local lock = math.min(tonumber(ARGV[2]) * 2 ^ (level - 1), tonumber(ARGV[3]))
  redis.call('HSET', KEYS[1], 'until', tostring(now + lock), 'failures', 0)
  ttl = math.max(ttl, math.ceil(lock))
end
redis.call('EXPIRE', KEYS[1], ttl)
return 0
"""


@dataclass(frozen=True)
class Backoff:
    """A back-off budget: `failures` attempts, then a lock of `lock_seconds`, doubled with
    each further lock up to `longest_seconds`; forgotten `memory_seconds` after the last
    attempt (or when the caller says the attempts succeeded)."""

    name: str
    failures: int
    lock_seconds: int
    longest_seconds: int
    memory_seconds: int


class _Memory:
    """Back-off budgets and claims of this process (embedded mode, or Redis down)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._budgets: dict[str, list[float]] = {}  # key -> [failures, level, until, expiry]
        self._claims: dict[str, float] = {}  # key -> expiry

    def _sweep(self, now: float) -> None:
        # Bounded memory: expired entries go whenever a table grows large.
        for table in (self._budgets, self._claims):
            if len(table) > 10_000:
                for key in [k for k, v in table.items() if _expiry(v) <= now]:
                    del table[key]

    def attempt(self, key: str, backoff: Backoff) -> int:
        now = time.time()
        with self._lock:
            self._sweep(now)
            state = self._budgets.get(key)
            if state is None or state[3] <= now:
                state = self._budgets[key] = [0, 0, 0.0, 0.0]
            if state[2] > now:
                return math.ceil(state[2] - now)
            state[0] += 1
            expiry = now + backoff.memory_seconds
            if state[0] >= backoff.failures:
                state[1] += 1
                lock = min(backoff.lock_seconds * 2 ** (state[1] - 1), backoff.longest_seconds)
                state[0], state[2] = 0, now + lock
                expiry = max(expiry, state[2])
            state[3] = expiry
            return 0

    def forget(self, key: str) -> None:
        with self._lock:
            self._budgets.pop(key, None)

    def claim(self, key: str, ttl: int) -> bool:
        now = time.time()
        with self._lock:
            self._sweep(now)
            if self._claims.get(key, 0.0) > now:
                return False
            self._claims[key] = now + ttl
            return True

    def reset(self) -> None:
        with self._lock:
            self._budgets.clear()
            self._claims.clear()


def _expiry(value: list[float] | float) -> float:
    return value[3] if isinstance(value, list) else value


class RateLimits:
    def __init__(self, storage_uri: str, enabled: bool, key_prefix: str) -> None:
        self.enabled = enabled
        self.key_prefix = key_prefix
        self.memory = _Memory()
        self.storage: Storage
        self.fallback: FixedWindowRateLimiter | None = None
        if storage_uri.startswith("redis"):
            self.storage = storage_from_string(
                storage_uri,
                key_prefix=key_prefix,
                socket_timeout=redis_client.TIMEOUT_SECONDS,
                socket_connect_timeout=redis_client.TIMEOUT_SECONDS,
            )
            self.fallback = FixedWindowRateLimiter(MemoryStorage())
        else:
            self.storage = storage_from_string(storage_uri)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.breaker = redis_client.Breaker(
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

    def _hit_all(
        self, hits: list[tuple[RateLimitItem, tuple[str, ...]]]
    ) -> list[tuple[bool, FixedWindowRateLimiter]]:
        """Count each hit; in Redis with one round trip (a pipeline of the limits library's
        own increment script, so the keys and windows are those `_hit` counts), in memory
        while Redis fails."""
        if self.fallback is None or not self.breaker.should_try():
            return [self._hit(item, *keys) for item, keys in hits]
        storage: Any = self.storage
        try:
            pipe = storage.storage.pipeline(transaction=False)
            for item, keys in hits:
                # EVAL with the text, not EVALSHA: a pipeline of a registered script first
                # asks Redis whether it knows it, which costs the round trip saved here.
                key = storage.prefixed_key(item.key_for(*keys))
                pipe.eval(storage.SCRIPT_INCR_EXPIRE, 1, key, item.get_expiry(), 1)
            counts = pipe.execute()
        except self.storage.base_exceptions as exc:
            self.breaker.failed(exc)
            return [(self.fallback.hit(item, *keys), self.fallback) for item, keys in hits]
        self.breaker.succeeded()
        return [
            (int(count) <= item.amount, self.limiter)
            for (item, _keys), count in zip(hits, counts, strict=True)
        ]

    def _refusal(
        self, item: RateLimitItem, limiter: FixedWindowRateLimiter, *keys: str
    ) -> RateLimited:
        try:
            stats = limiter.get_window_stats(item, *keys)
        except self.storage.base_exceptions:  # Redis went away between the two calls
            stats = WindowStats(time.time() + item.get_expiry(), 0)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimited(
            "Too many requests; try again later",
            headers={
                "Retry-After": str(retry_after),
                "x-ratelimit-limit": str(item.amount),
                "x-ratelimit-remaining": str(stats.remaining),
                "x-ratelimit-reset": str(int(stats.reset_time)),
            },
        )

    def check(self, setting: str, limit_text: str, *identity: str) -> None:
        """Count one hit against `limit_text` for this identity; RateLimited when over."""
        if not self.enabled:
            return
        item = parse(limit_text)
        allowed, limiter = self._hit(item, setting, *identity)
        if not allowed:
            raise self._refusal(item, limiter, setting, *identity)

    def check_all(self, limits: list[tuple[str, str, tuple[str, ...]]]) -> None:
        """Count one hit against each (setting, limit text, identity), all at once: every
        one is counted, then RateLimited for the first that is over."""
        if not self.enabled or not limits:
            return
        hits = [(parse(text), (setting, *identity)) for setting, text, identity in limits]
        for (item, keys), (allowed, limiter) in zip(hits, self._hit_all(hits), strict=True):
            if not allowed:
                raise self._refusal(item, limiter, *keys)

    def _redis(self) -> redis.Redis | None:
        """The Redis client while Redis is usable, else None (memory it is)."""
        client = redis_client.client()
        if client is None or not self.breaker.should_try():
            return None
        return client

    def attempt(self, backoff: Backoff, *identity: str) -> int:
        """Count one attempt against `backoff` for this identity: 0 when it may go on,
        else the seconds its lock still holds."""
        key = ":".join((self.key_prefix, "backoff", backoff.name, *identity))
        client = self._redis()
        if client is not None:
            try:
                args = (
                    backoff.failures,
                    backoff.lock_seconds,
                    backoff.longest_seconds,
                    backoff.memory_seconds,
                )
                retry_after = int(client.eval(_ATTEMPT, 1, key, *args))
            except redis_client.REDIS_ERRORS as exc:
                self.breaker.failed(exc)
            else:
                self.breaker.succeeded()
                return retry_after
        return self.memory.attempt(key, backoff)

    def forget(self, backoff: Backoff, *identity: str) -> None:
        """The attempts succeeded: start this identity's budget afresh."""
        key = ":".join((self.key_prefix, "backoff", backoff.name, *identity))
        self.memory.forget(key)
        client = self._redis()
        if client is not None:
            try:
                client.delete(key)
            except redis_client.REDIS_ERRORS as exc:
                self.breaker.failed(exc)

    def claim(self, purpose: str, value: str, ttl: int) -> bool:
        """True the first time `value` is claimed for `purpose` (within `ttl` seconds)."""
        key = ":".join((self.key_prefix, "claim", purpose, value))
        client = self._redis()
        if client is not None:
            try:
                claimed = bool(client.set(key, b"1", nx=True, ex=max(1, ttl)))
            except redis_client.REDIS_ERRORS as exc:
                self.breaker.failed(exc)
            else:
                self.breaker.succeeded()
                return claimed
        return self.memory.claim(key, ttl)

    def reset(self) -> None:
        self.storage.reset()
        if self.fallback is not None:
            self.fallback.storage.reset()
        self.memory.reset()


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


def attempt(backoff: Backoff, *identity: str) -> int:
    """Count one attempt against a back-off budget: 0, or the seconds its lock holds."""
    limits: RateLimits = current_app.extensions[_EXTENSION]
    return limits.attempt(backoff, *identity)


def forget(backoff: Backoff, *identity: str) -> None:
    """Start a back-off budget afresh (the attempt succeeded)."""
    limits: RateLimits = current_app.extensions[_EXTENSION]
    limits.forget(backoff, *identity)


def claim_once(purpose: str, value: str, ttl: int) -> bool:
    """True the first time `value` is claimed for `purpose` in `ttl` seconds, else False."""
    limits: RateLimits = current_app.extensions[_EXTENSION]
    return limits.claim(purpose, value, ttl)


def login_keys(*identifiers: str | None) -> list[str]:
    """The distinct, case-folded identifiers a request names (username, email): a limit
    keyed on a login counts against every one of them, so pairing the real address with
    a fresh username each time cannot dodge it."""
    return sorted({value.casefold() for value in identifiers if value})


def check_all(*limits: tuple[str, tuple[str, ...]]) -> None:
    """Apply several limits (config setting, identity) with one round trip to Redis: each
    is counted, then RateLimited for the first one over (in the order given)."""
    rate_limits: RateLimits = current_app.extensions[_EXTENSION]
    config = current_app.config
    rate_limits.check_all([(setting, config[setting], identity) for setting, identity in limits])


def check_each(setting: str, scope: str, identifiers: list[str], *extra: str) -> None:
    """Apply the limit `setting` to each identifier (within `scope`, e.g. a tenant)."""
    for identifier in identifiers:
        check(setting, scope, identifier, *extra)
