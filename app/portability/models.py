"""Import and export jobs: the job row (status, summary, the resume point), the file it
reads or writes (kept in the database in chunks, so any worker can stream it and no shared
disk is needed) and the per-user errors of an import, in Auth0's shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, TimestampMixin, str32, str64, str255

IMPORT = "users_import"
EXPORT = "users_export"
PENDING, PROCESSING, COMPLETED, FAILED = "pending", "processing", "completed", "failed"
INPUT, OUTPUT = "input", "output"


class TransferJob(TenantScoped, TimestampMixin, Base):
    """One import or export. `records_done` is the resume point of an import: it moves in
    the same transaction as each batch of users it counts, so a worker killed mid-job
    leaves no half-written user, and the rerun skips exactly what was written."""

    __tablename__ = "transfer_job"
    __table_args__ = (Index("ix_transfer_job_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str32] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(16))  # users_import | users_export
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    # The file's format: auth0 | firebase | gatehouse (import); json | csv (export).
    format: Mapped[str] = mapped_column(String(16))
    connection_id: Mapped[str64 | None]
    external_id: Mapped[str255 | None]
    upsert: Mapped[bool] = mapped_column(default=False)
    send_completion_email: Mapped[bool] = mapped_column(default=False)
    # Export only: Auth0's `fields` [{name, export_as}] and `limit`.
    fields: Mapped[list[Any] | None] = mapped_column(JSON)
    limit: Mapped[int | None]
    file_bytes: Mapped[int] = mapped_column(default=0)
    records_done: Mapped[int] = mapped_column(default=0)
    inserted: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    # Imported hashes of a weak algorithm (md4, md5, sha1, unsalted digests).
    weak_hashes: Mapped[int] = mapped_column(default=0)
    status_details: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class TransferChunk(TenantScoped, Base):
    """A piece of a job's file, in order: the upload of an import (deleted when the job
    ends) or the result of an export (deleted when the job expires)."""

    __tablename__ = "transfer_chunk"

    job_id: Mapped[str32] = mapped_column(
        ForeignKey("transfer_job.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # input | output
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class TransferError(TenantScoped, Base):
    """One rejected user of an import: the user as the file gave it (password hashes and
    secrets left out) and `errors[{code, message, path}]`."""

    __tablename__ = "transfer_error"

    job_id: Mapped[str32] = mapped_column(
        ForeignKey("transfer_job.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    user: Mapped[dict[str, Any]] = mapped_column(JSON)
    errors: Mapped[list[Any]] = mapped_column(JSON)
