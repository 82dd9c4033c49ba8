"""Background plumbing: tasks queued after commit run on the real worker (Redis broker),
in an app context that commits; a rolled-back transaction queues nothing; eager mode
runs the same task in-process.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import redis
from celery import shared_task
from flask import Flask
from kombu.common import ignore_errors
from sqlalchemy import select

from app import create_app
from app.core import broker
from app.core.db import db
from app.core.jobs import enqueue_after_commit
from app.tenants import service as tenant_service
from app.tenants.models import Tenant
from tests import factories
from tests.conftest import make_config, redis_url


@shared_task(name="tests.create_tenant_named")
def create_tenant_named(name: str) -> None:
    """A task that writes through a service; FlaskTask commits it."""
    tenant_service.create_tenant(name=name)


def _tenant_names(app: Flask) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(Tenant.name)))


def _wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    return bool(factories.wait_until(predicate, timeout))


def test_worker_runs_task_queued_after_commit(app: Flask, celery_worker: Any) -> None:
    assert "tests.create_tenant_named" in celery_worker.app.tasks
    with app.app_context():
        enqueue_after_commit(create_tenant_named, "from-worker")
        assert "from-worker" not in _tenant_names(app)  # nothing is sent before the commit
        db.session.commit()
    assert _wait_for(lambda: "from-worker" in _tenant_names(app))


def test_rolled_back_transaction_queues_nothing(app: Flask, celery_worker: Any) -> None:
    with app.app_context():
        enqueue_after_commit(create_tenant_named, "never")
        db.session.rollback()
        enqueue_after_commit(create_tenant_named, "afterwards")
        db.session.commit()
    assert _wait_for(lambda: "afterwards" in _tenant_names(app))
    assert "never" not in _tenant_names(app)


def test_eager_mode_runs_tasks_in_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'eager.db'}"
    eager_app = create_app(make_config(url, tmp_path, REDIS_URL="", CELERY_BROKER_URL=""))
    assert eager_app.config["CELERY_TASK_ALWAYS_EAGER"] is True
    with eager_app.app_context():
        db.create_all()
        enqueue_after_commit(create_tenant_named, "eager")
        db.session.commit()
    # In this process, on a background thread, after the commit that queued it.
    assert _wait_for(lambda: _tenant_names(eager_app) == {"eager"})


def test_a_worker_waits_out_a_broker_outage_of_any_length(app: Flask) -> None:
    # Celery's default stops reconnecting after 100 attempts (about 45 minutes) and the
    # worker exits; `make test-reliability` stops Redis under a running worker.
    conf = app.extensions["celery"].conf
    assert conf.broker_connection_max_retries is None
    assert conf.broker_connection_retry_on_startup is True


def test_closing_a_collected_broker_connection_with_a_task_unacknowledged_is_no_crash(
    app: Flask,
) -> None:
    """When Redis goes away mid-task, Celery 5.7 collects the consumer's connection (which
    drops its client) and then closes it; restoring the unacknowledged message must fail
    as a connection error, which Celery ignores, not as the AttributeError that made the
    worker exit (`make test-reliability` stops Redis under a busy worker)."""
    celery = app.extensions["celery"]
    queue = f"{app.config['CELERY_QUEUE']}-lost-{uuid.uuid4().hex[:6]}"
    conn = celery.connection_for_write()
    assert isinstance(conn.transport, broker.Transport)
    channel = conn.default_channel
    channel.queue_declare(queue)
    channel.basic_publish(channel.prepare_message("payload"), exchange="", routing_key=queue)
    message = channel.basic_get(queue, no_ack=False)
    assert message is not None and message.delivery_tag in channel.qos._delivered
    conn._do_close_transport()  # the state Connection.collect() leaves behind
    ignore_errors(conn, conn.close)  # what the consumer does next: no exception
    # Tidy the shared Redis: the message waits in the unacked set a real worker restores.
    client = redis.Redis.from_url(redis_url())
    client.hdel("unacked", message.delivery_tag)
    client.zrem("unacked_index", message.delivery_tag)
    client.delete(queue)
