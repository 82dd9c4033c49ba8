"""The shared Redis client (when REDIS_URL is set) for small, fast buffers."""

from __future__ import annotations

import redis
from flask import Flask, current_app

_EXTENSION = "gatehouse.redis"


def init_kv(app: Flask) -> None:
    url = app.config["REDIS_URL"]
    app.extensions[_EXTENSION] = (
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) if url else None
    )


def client() -> redis.Redis | None:
    """The Redis client, or None in embedded mode."""
    return current_app.extensions.get(_EXTENSION)
