"""The old name of `app/core/redis_client.py`, kept only while `app/core/ratelimit.py` (being
changed on another branch) still imports it: delete this file once that import says
`redis_client`."""

from app.core.redis_client import TIMEOUT_SECONDS, Breaker

__all__ = ["TIMEOUT_SECONDS", "Breaker"]
