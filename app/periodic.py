"""The periodic jobs, in one table: beat schedules them (worker/) and
`flask run-periodic [NAME]` runs the very same tasks once, in-process. Beat also touches a
heartbeat file on every tick, so a health check can tell a live beat from a hung one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.beat import PersistentScheduler
from flask import Flask, current_app

from app.applications import tasks as application_tasks
from app.credentials import tasks as credential_tasks
from app.mail import tasks as mail_tasks
from app.portability import tasks as portability_tasks
from app.tenants import tasks as tenant_tasks
from app.tokens import tasks as token_tasks
from app.users import tasks as user_tasks
from app.webhooks import tasks as webhook_tasks


@dataclass(frozen=True)
class Job:
    tasks: tuple[Task, ...]
    interval_setting: str  # config key holding the interval in seconds


JOBS: dict[str, Job] = {
    "flush-activity": Job(
        (user_tasks.flush_last_activity, tenant_tasks.flush_key_usage),
        "ACTIVITY_FLUSH_INTERVAL_SECONDS",
    ),
    "requeue-stuck": Job(
        (
            mail_tasks.requeue_stuck,
            portability_tasks.requeue_stale_imports,
            portability_tasks.requeue_stale_exports,
        ),
        "MAIL_REQUEUE_INTERVAL_SECONDS",
    ),
    "webhooks": Job((webhook_tasks.dispatch_due,), "WEBHOOK_DISPATCH_INTERVAL_SECONDS"),
    "cleanup": Job(
        (
            token_tasks.cleanup_expired,
            credential_tasks.cleanup_resets,
            mail_tasks.cleanup_deliveries,
            application_tasks.cleanup_codes,
            portability_tasks.cleanup_exports,
            webhook_tasks.cleanup_messages,
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


HEARTBEAT_FILE = "beat-heartbeat"  # in the instance folder
# Beat wakes at least this often (Celery's default is 300 s), so while it runs its heartbeat
# is never older than this; docker-compose.yml's check allows 2 minutes.
BEAT_MAX_LOOP_SECONDS = 30


class HeartbeatScheduler(PersistentScheduler):
    """Celery's persistent scheduler (the `--schedule` file), touching the heartbeat file
    after every tick."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = super().tick(*args, **kwargs)
        heartbeat = self.app.conf.get("gatehouse_beat_heartbeat")
        if heartbeat:
            Path(heartbeat).touch()
        return interval


def configure_beat(celery: Celery, app: Flask) -> None:
    """The schedule, the scheduler and its heartbeat file for `celery -A worker beat`."""
    celery.conf.beat_schedule = beat_schedule(app)
    celery.conf.beat_scheduler = f"{__name__}:HeartbeatScheduler"
    celery.conf.beat_max_loop_interval = BEAT_MAX_LOOP_SECONDS
    celery.conf.gatehouse_beat_heartbeat = str(Path(app.instance_path) / HEARTBEAT_FILE)
