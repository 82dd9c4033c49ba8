"""Celery wired into Flask: tasks run in an app context (and, for a tenant's task, in its
tenant scope) and commit like a request does; work is queued only after the surrounding
transaction commits. Also the other edges' way into a tenant (`in_tenant`, for the CLI).
The periodic jobs' work across tenants is run by core.sweeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from celery import Celery, Task, shared_task
from celery.exceptions import Retry
from flask import Flask, current_app
from kombu import Queue
from sqlalchemy import Executable, Result, event
from sqlalchemy.orm import Session

from app.core import metrics
from app.core.broker import TRANSPORT
from app.core.db import db
from app.core.logs import bound_request_id, current_request_id
from app.core.tenancy import all_tenants, tenant_scope

log = logging.getLogger(__name__)
_PENDING_KEY = "gatehouse_after_commit"
_BACKGROUND_LOCK = threading.Lock()
_BACKGROUND: dict[str, ThreadPoolExecutor] = {}


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app for `app` (eager when no broker is configured)."""

    class FlaskTask(Task):
        tenant_scoped = False  # set by @tenant_task: the first argument is the tenant id

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            # Log lines carry the id of the request that queued the task (sent along in the
            # message, or the request in hand when tasks run in-process), else the task's.
            request_id = (
                getattr(self.request, "gatehouse_request_id", None)
                or current_request_id()
                or self.request.id
            )
            with app.app_context(), bound_request_id(request_id), self._scope(args, kwargs):
                try:
                    result = self.run(*args, **kwargs)
                    db.session.commit()
                except Retry:
                    db.session.rollback()
                    metrics.count_task(self.name, "retried")
                    raise
                except BaseException:
                    db.session.rollback()
                    metrics.count_task(self.name, "failed")
                    raise
                metrics.count_task(self.name, "succeeded")
                return result

        def _scope(
            self, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> AbstractContextManager[Any]:
            if not self.tenant_scoped:
                return nullcontext()
            return in_tenant(kwargs["tenant_id"] if "tenant_id" in kwargs else args[0])

    celery = Celery(app.name, task_cls=FlaskTask, set_as_current=False)
    broker = app.config["CELERY_BROKER_URL"]
    celery.conf.update(
        broker_url=broker or "memory://",
        task_always_eager=app.config["CELERY_TASK_ALWAYS_EAGER"],
        task_default_queue=app.config["CELERY_QUEUE"],
        # Webhook attempts have a queue of their own, so slow receivers never delay mail;
        # a worker started without -Q consumes both (a deployment may add one worker that
        # takes only WEBHOOK_QUEUE).
        task_queues=(
            Queue(app.config["CELERY_QUEUE"]),
            Queue(app.config["WEBHOOK_QUEUE"]),
        ),
        task_routes={"webhooks.*": {"queue": app.config["WEBHOOK_QUEUE"]}},
        task_eager_propagates=True,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # A worker waits out a broker outage of any length (Celery's default gives up after
        # 100 attempts, about 45 minutes, and the worker exits).
        broker_connection_max_retries=None,
        broker_transport_options={"socket_connect_timeout": 2, "max_retries": 1},
        # A request must not hang on a dead broker: the row is committed and a periodic
        # job re-queues it, so give up publishing quickly.
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 0.5,
        },
        timezone="UTC",
    )
    if broker.startswith(("redis://", "rediss://")):
        celery.conf.broker_transport = TRANSPORT  # survives losing Redis mid-task
    # Neither current nor default: a process may build several Flask apps (tests), and
    # work is always sent through the app's own Celery (send_task, run_job).
    app.extensions["celery"] = celery
    _install_after_commit_hooks()
    return celery


def tenant_task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`shared_task(**options)` for work in one tenant: the task's first argument is the
    tenant id, and the task body runs in that tenant's scope (entered here, at the task's
    edge, as the HTTP decorators do for a request), so services called from it open none."""
    return shared_task(tenant_scoped=True, **options)


@contextmanager
def in_tenant(tenant_id: str) -> Iterator[None]:
    """Run work that does not come through a request (a task, a CLI command) in one tenant:
    the non-HTTP edges' counterpart of the request decorators' scope."""
    with tenant_scope(tenant_id):
        yield


def execute_all_tenants(statement: Executable) -> Result[Any]:
    """Run `statement` over every tenant's rows: the one way a module outside core reads
    or writes across tenants (a preflight that names no tenant, key rotation), in a
    function whose name ends `_all_tenants` (the periodic jobs declare theirs to
    core.sweeps instead). The filter applies when the statement runs, so the result may be
    read after this returns."""
    with all_tenants():
        return db.session.execute(statement)


def enqueue_after_commit(task: Task, *args: Any, off_request: bool = False) -> None:
    """Queue `task(*args)` once the current transaction commits; dropped on rollback.
    `off_request`: publish it from a background thread, so the request does not wait for
    the broker (for work whose rows a periodic job also finds, should the process die
    before the publish)."""
    db.session.connection()  # begin the transaction now, so a rollback is seen even if empty
    db.session.info.setdefault(_PENDING_KEY, []).append((task, args, off_request))


def send_task(task: Task, *args: Any, countdown: float | None = None) -> None:
    """Queue `task` now (or to run after `countdown` seconds) through this app's own Celery
    (its broker, its eager setting): a shared_task proxy would pick whichever Celery app was
    created last in the process."""
    task = current_app.extensions["celery"].tasks[task.name]
    task.apply_async(
        args, countdown=countdown, headers={"gatehouse_request_id": current_request_id()}
    )


def _run_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, [])
    if not pending:
        return
    celery = current_app.extensions["celery"]
    if celery.conf.task_always_eager:
        # In-process tasks run after the answer, on a background thread: a request that
        # queues a mail (a reset for a real user) then takes as long as one that does not.
        work = [(task, args) for task, args, _ in pending]
        _background("eager-task").submit(_run_eagerly, celery, work, current_request_id())
        return
    later = [(task, args) for task, args, off_request in pending if off_request]
    if later:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        _background("task-publisher").submit(_publish, app, later, current_request_id())
    _publish_now([(task, args) for task, args, off_request in pending if not off_request])


def _publish_now(pending: list[tuple[Task, tuple[Any, ...]]]) -> None:
    for task, args in pending:
        try:
            send_task(task, *args)
        except Exception:
            # The row that asked for this work is committed; periodic jobs pick it up later.
            log.warning("could not queue %s; it will be retried by its periodic job", task.name)


def _publish(
    app: Flask, pending: list[tuple[Task, tuple[Any, ...]]], request_id: str | None
) -> None:
    with app.app_context(), bound_request_id(request_id):
        _publish_now(pending)


def _background(name: str) -> ThreadPoolExecutor:
    """One background thread per purpose (`eager-task`, `task-publisher`), made on first use."""
    with _BACKGROUND_LOCK:
        if name not in _BACKGROUND:
            _BACKGROUND[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        return _BACKGROUND[name]


def _run_eagerly(
    celery: Celery, pending: list[tuple[Task, tuple[Any, ...]]], request_id: str | None
) -> None:
    # The thread's log lines carry the id of the request that queued the work.
    with bound_request_id(request_id):
        for task, args in pending:
            try:
                celery.tasks[task.name].apply(args=args)  # FlaskTask enters the app context
            except Exception:
                log.exception("in-process task %s failed", task.name)


def _drop_pending(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # a savepoint's rollback keeps the outer work
        session.info.pop(_PENDING_KEY, None)


def _install_after_commit_hooks() -> None:
    if not event.contains(Session, "after_commit", _run_pending):
        event.listen(Session, "after_commit", _run_pending)
        event.listen(Session, "after_soft_rollback", _drop_pending)
