"""The periodic jobs' work across tenants, executed in one place. A domain package only
declares what is swept: a `Cleanup` (rows that may go), a `Requeue` (rows whose task was
lost, to be sent again), a `Count` (rows by state, for a /metrics gauge). Its periodic task
hands the declaration here to run, and this module alone lifts the tenant filter for
them, one bounded statement at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Task
from flask import current_app
from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.orm import InstrumentedAttribute

from app.core.db import db, utcnow
from app.core.jobs import send_task
from app.core.tenancy import all_tenants

log = logging.getLogger(__name__)
MAX_BATCHES = 1000  # per clean-up and run: a backlog larger than this waits for the next


@dataclass(frozen=True)
class Cleanup:
    """Rows of `model` that may be deleted, whichever tenant holds them: those matching
    `where(now)`."""

    name: str  # what goes, for the log ("expired refresh tokens")
    model: type[Any]
    where: Callable[[datetime], ColumnElement[bool]]


@dataclass(frozen=True)
class Requeue:
    """Rows whose task was lost (a broker outage, a dead worker): `select_rows(now)`
    selects (tenant id, row id) in the order to send them, and each is sent to
    `task(tenant_id, row_id)` again, at most `limit` per run."""

    name: str  # what is sent, for the log ("mail deliveries")
    select_rows: Callable[[datetime], Select[Any]]
    task: Task
    limit: int


@dataclass(frozen=True)
class Count:
    """How many rows hold each value of `column`, all tenants together; each of `values`
    is reported, 0 when no row holds it."""

    column: InstrumentedAttribute[str]
    values: tuple[str, ...]


def clean(*cleanups: Cleanup) -> int:
    """Delete every row each clean-up matches, CLEANUP_BATCH_SIZE rows per statement and a
    commit after each (many short transactions instead of one long one); how many went."""
    batch_size = current_app.config["CLEANUP_BATCH_SIZE"]
    return sum(_clean(cleanup, batch_size) for cleanup in cleanups)


def _clean(cleanup: Cleanup, batch_size: int) -> int:
    pk = cleanup.model.__mapper__.primary_key[0]
    total = 0
    for _ in range(MAX_BATCHES):
        doomed = select(pk).where(cleanup.where(utcnow())).limit(batch_size)
        with all_tenants():
            done = db.session.execute(
                delete(cleanup.model)
                .where(pk.in_(doomed))
                .execution_options(synchronize_session=False)
            ).rowcount
        db.session.commit()
        total += done
        if done < batch_size:
            break
    if total:
        log.info("clean-up: %d %s deleted", total, cleanup.name)
    return total


def due(requeue: Requeue) -> list[tuple[str, str]]:
    """(tenant id, row id) of the rows `requeue` would send now, at most its limit."""
    statement = requeue.select_rows(utcnow()).limit(requeue.limit)
    with all_tenants():
        return [(tenant_id, row_id) for tenant_id, row_id in db.session.execute(statement)]


def send_again(requeue: Requeue) -> int:
    """Send the task again for each row due; a broker that is down leaves the rest for
    the job's next run (the rows stay as they are). How many were found."""
    rows = due(requeue)
    for tenant_id, row_id in rows:
        try:
            send_task(requeue.task, tenant_id, row_id)
        except Exception:
            log.warning("broker unavailable; %d %s wait for the next run", len(rows), requeue.name)
            break
    return len(rows)


def count(declared: Count) -> dict[str, int]:
    """{value: rows holding it} over every tenant (read when /metrics is scraped)."""
    column = declared.column
    with all_tenants():
        rows = db.session.execute(select(column, func.count()).group_by(column)).all()
    counts = dict.fromkeys(declared.values, 0)
    counts.update({value: number for value, number in rows})
    return counts
