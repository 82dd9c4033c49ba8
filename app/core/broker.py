"""The Celery broker transport: kombu's Redis transport, with one fault fixed that killed
the worker when Redis went away while a task was running.

On a lost connection, Celery 5.7's consumer collects the connection (which drops the
transport's client) and then closes it; the channel, still holding the running task's
unacknowledged message, tries to restore it and asks the dropped client for its address:
an AttributeError, which Celery does not expect there, and the worker exits instead of
reconnecting. Here that case is a connection error, which Celery ignores while closing;
the message stays in Redis's unacked set, and a delivery row is re-queued by
`requeue-stuck` in any case.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

# Celery's `broker_transport` for redis:// and rediss:// broker URLs.
TRANSPORT = "app.core.broker:Transport"


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
