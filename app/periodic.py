"""The periodic jobs, in one table: beat schedules them (worker/) and
`flask run-periodic [NAME]` runs the very same tasks once, in-process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Task
from flask import Flask, current_app

from app.applications import tasks as application_tasks
from app.credentials import tasks as credential_tasks
from app.mail import tasks as mail_tasks
from app.tenants import tasks as tenant_tasks
from app.tokens import tasks as token_tasks
from app.users import tasks as user_tasks


@dataclass(frozen=True)
class Job:
    tasks: tuple[Task, ...]
    interval_setting: str  # config key holding the interval in seconds


JOBS: dict[str, Job] = {
    "flush-activity": Job(
        (user_tasks.flush_last_activity, tenant_tasks.flush_key_usage),
        "ACTIVITY_FLUSH_INTERVAL_SECONDS",
    ),
    "requeue-stuck": Job((mail_tasks.requeue_stuck,), "MAIL_REQUEUE_INTERVAL_SECONDS"),
    "cleanup": Job(
        (
            token_tasks.cleanup_expired,
            credential_tasks.cleanup_resets,
            mail_tasks.cleanup_deliveries,
            application_tasks.cleanup_codes,
        ),
        "CLEANUP_INTERVAL_SECONDS",
    ),
}


def beat_schedule(app: Flask) -> dict[str, dict[str, Any]]:
    """Celery beat entries for every job, at the intervals the configuration names."""
    schedule = {}
    for name, job in JOBS.items():
        for task in job.tasks:
            schedule[f"{name}:{task.name}"] = {
                "task": task.name,
                "schedule": float(app.config[job.interval_setting]),
            }
    return schedule


def run_job(name: str) -> dict[str, Any]:
    """Run every task of one job now, in this process; {task name: its result}."""
    # This app's own task objects: a shared_task proxy would run under whichever Celery
    # app (and so whichever Flask app) was created last in the process.
    tasks = current_app.extensions["celery"].tasks
    return {task.name: tasks[task.name]() for task in JOBS[name].tasks}
