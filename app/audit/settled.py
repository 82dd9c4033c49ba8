"""The daily counts of settled days, kept in Redis: a UTC day that ended more than a day
ago gets no more sign-in or sign-up events (they are recorded as they happen; the
worker's backlog is seconds), so its counts are computed once and read back for
SETTLED_TTL seconds. A busy tenant's 30-day stats then count only the last two days'
events (the console's dashboard at a million users). Without Redis (embedded, or down:
its breaker), every day is counted."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import redis
from flask import current_app

from app.core import redis_client
from app.core.tenancy import current_tenant_id

# Kept this long, so a late event (a worker down for a day) shows within the hour.
SETTLED_TTL = 3600
_BREAKER = "gatehouse.audit.settled.breaker"


def _redis() -> tuple[redis.Redis, redis_client.Breaker] | None:
    return redis_client.with_breaker(
        _BREAKER, "settled daily stats", "daily stats are counted from the audit log every time"
    )


def _key(day: date) -> str:
    prefix = current_app.config["REDIS_KEY_PREFIX"]
    return f"{prefix}:daily-stats:{current_tenant_id()}:{day.isoformat()}"


def read(days: list[date]) -> dict[date, dict[str, Any]]:
    """The kept counts of those of `days` Redis has (the current tenant's)."""
    usable = _redis()
    if usable is None or not days:
        return {}
    client, breaker = usable
    try:
        values = client.mget([_key(day) for day in days])
    except redis_client.REDIS_ERRORS as exc:
        breaker.failed(exc)
        return {}
    breaker.succeeded()
    return {day: json.loads(value) for day, value in zip(days, values, strict=True) if value}


def keep(counts: dict[date, dict[str, Any]]) -> None:
    """Keep settled days' counts (JSON-ready dicts) for SETTLED_TTL seconds."""
    usable = _redis()
    if usable is None or not counts:
        return
    client, breaker = usable
    try:
        pipeline = client.pipeline(transaction=False)
        for day, values in counts.items():
            pipeline.set(_key(day), json.dumps(values), ex=SETTLED_TTL)
        pipeline.execute()
    except redis_client.REDIS_ERRORS as exc:
        breaker.failed(exc)
        return
    breaker.succeeded()
