"""Import and export work for the worker: run one import job (resumable) or write one
export job's file, queue again the jobs whose worker died or whose message was lost (the
periodic `requeue-stuck` job), and delete expired exports (the periodic clean-up)."""

from __future__ import annotations

import logging

from celery import shared_task

from app.core import sweeps
from app.core.db import db
from app.core.jobs import tenant_task
from app.core.sweeps import Requeue
from app.portability import exports, imports

log = logging.getLogger(__name__)


@tenant_task(name="portability.run_import", acks_late=True, reject_on_worker_lost=True)
def run_import_job(tenant_id: str, job_id: str) -> None:
    """Run (or resume) one import job in its tenant's scope, which @tenant_task enters."""
    imports.run_import(job_id)


# Jobs the `requeue-stuck` job sends again, whichever tenant's (core.sweeps runs it).
STALE_IMPORTS = Requeue("import jobs", imports.stale_imports, run_import_job, limit=100)


@shared_task(name="portability.requeue_stale_imports")
def requeue_stale_imports() -> int:
    """Queue again every import job whose worker stopped sending heartbeats."""
    return sweeps.send_again(STALE_IMPORTS)


@tenant_task(name="portability.run_export_job", acks_late=True, reject_on_worker_lost=True)
def run_export_job(tenant_id: str, job_id: str) -> None:
    """Write an export job's file (a finished job is left alone, so a redelivery is
    harmless); an unexpected error marks the job failed instead of leaving it pending."""
    try:
        exports.run_export(job_id)
    except Exception:
        db.session.rollback()
        log.exception("export job %s failed", job_id)
        exports.fail_export(job_id, "The export failed; create a new export job")


STALE_EXPORTS = Requeue("export jobs", exports.stale_exports, run_export_job, limit=100)


@shared_task(name="portability.requeue_stale_exports")
def requeue_stale_exports() -> int:
    """Queue again every export job left unfinished (its message lost, its worker dead)."""
    return sweeps.send_again(STALE_EXPORTS)


@shared_task(name="portability.cleanup_exports")
def cleanup_exports() -> int:
    """Delete export jobs (and their files) past EXPORT_RETENTION_SECONDS."""
    return sweeps.clean(exports.EXPIRED)
