"""A last-seen buffer: "X was active at T" costs at most one Redis write (HSET) per request
and no database write; a periodic job drains the buffer into the database in batches.
A process writes the same key at most every few seconds, so a busy client costs Redis
little more than an idle one.

Without Redis (embedded mode), and while Redis is down, the caller is told to write
through, at most once a minute per key, so the database still sees activity without a write
per request and a Redis outage never fails a request.
"""

from __future__ import annotations

import threading
import time

import redis
from flask import current_app

from app.core import redis_client

WRITE_THROUGH_EVERY_SECONDS = 60
REDIS_WRITE_EVERY_SECONDS = 5
_local_lock = threading.Lock()
_local_last_write: dict[tuple[str, str], float] = {}
_BREAKER = "gatehouse.lastseen.breaker"


def _hash_name(kind: str) -> str:
    return f"{current_app.config['REDIS_KEY_PREFIX']}:lastseen:{kind}"


def _redis() -> tuple[redis.Redis, redis_client.Breaker] | None:
    """The Redis client and this process's breaker for it, unless embedded or failing."""
    return redis_client.with_breaker(
        _BREAKER,
        "activity buffers",
        "activity is written to the database, at most once a minute",
    )


def record(kind: str, key: str, at: float | None = None) -> bool:
    """Note that `key` was seen now; True when the caller must write through itself."""
    at = at or time.time()
    usable = _redis()
    every = REDIS_WRITE_EVERY_SECONDS if usable is not None else WRITE_THROUGH_EVERY_SECONDS
    with _local_lock:
        last = _local_last_write.get((kind, key), 0.0)
        if at - last < every:
            return False
        _local_last_write[(kind, key)] = at
        if len(_local_last_write) > 100_000:
            _local_last_write.clear()
    if usable is None:
        return True
    client, breaker = usable
    try:
        client.hset(_hash_name(kind), key, f"{at:.3f}")
    except redis_client.REDIS_ERRORS as exc:
        breaker.failed(exc)
        return True
    breaker.succeeded()
    return False


def drain(kind: str) -> dict[str, float]:
    """Take every buffered entry of `kind` atomically (new writes go to a fresh hash)."""
    client = redis_client.client()
    if client is None:
        return {}
    source = _hash_name(kind)
    staging = f"{source}:draining:{time.time_ns()}"
    try:
        client.rename(source, staging)
    except Exception as exc:  # redis answers "no such key" when nothing was buffered
        if "no such key" in str(exc).lower():
            return {}
        raise
    entries = client.hgetall(staging)
    client.delete(staging)
    return {k.decode(): float(v) for k, v in entries.items()}
