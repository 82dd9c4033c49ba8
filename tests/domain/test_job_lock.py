"""The lock a job's worker takes before each batch reads the row as it is now: another
worker's commit made after this session loaded the job must show, or two workers on one
import write the same batch (the second rejecting every user as a duplicate in the file)."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import text

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.portability import jobs
from tests.factories import TenantHandle


def test_the_lock_reads_what_another_worker_committed(app: Flask, tenant: TenantHandle) -> None:
    with app.app_context(), tenant_scope(tenant.id):
        job_id = jobs.new_job(type="import", format="json").id
        db.session.commit()
        held = jobs.get_job(job_id)  # as run_import's file reader: loaded, records_done 0
        assert held.records_done == 0
        # Another worker's batch lands meanwhile, on its own connection.
        with db.engine.begin() as other:
            other.execute(
                text("UPDATE transfer_job SET records_done = 1000 WHERE id = :id"), {"id": job_id}
            )
        locked = jobs.lock_job(job_id)
        assert locked is held and locked.records_done == 1000
        db.session.rollback()
