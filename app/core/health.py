"""Readiness checks of the backing services (the database and the Celery broker), plus
those the app registers in `app.extensions["gatehouse.readiness"]`."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import text

from app.core.db import db


def check_database() -> str:
    """`ok`, or why the database cannot be reached."""
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        db.session.rollback()
        return f"down: {type(exc).__name__}"


def check_broker() -> str:
    """`ok` (or `eager` when tasks run in-process), or why the broker cannot be reached."""
    if current_app.config["CELERY_TASK_ALWAYS_EAGER"]:
        return "eager"
    celery = current_app.extensions["celery"]
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=2)  # one try: a probe must not wait
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


def readiness() -> dict[str, str]:
    """Every check: database, broker, and those the app added (the key ring's)."""
    checks = {"database": check_database(), "broker": check_broker()}
    for name, check in current_app.extensions.get("gatehouse.readiness", {}).items():
        checks[name] = check()
    return checks
