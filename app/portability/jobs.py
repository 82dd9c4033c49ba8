"""Job rows and their files: create a job, find one of the current tenant's (another
tenant's id is simply not found), and stream a job's file into and out of the database in
chunks, so neither an upload nor a worker ever holds a whole file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from sqlalchemy import delete, select

from app.connections import service as connection_service
from app.core import security
from app.core.db import db, utcnow
from app.core.errors import NotFound
from app.core.tenancy import current_tenant_id
from app.portability.models import TransferChunk, TransferError, TransferJob

CHUNK_BYTES = 1 << 20


def new_job(*, type: str, format: str, **fields: Any) -> TransferJob:
    """A pending job of the current tenant, flushed (its id is Auth0-like: `job_…`)."""
    job = TransferJob(
        id=f"job_{security.random_hex(8)}",
        tenant_id=current_tenant_id(),
        type=type,
        format=format,
        status="pending",
        **fields,
    )
    db.session.add(job)
    db.session.flush()
    return job


def get_job(job_id: str) -> TransferJob:
    """The current tenant's job `job_id`; NotFound `job_not_found` otherwise."""
    job = db.session.get(TransferJob, job_id) if isinstance(job_id, str) else None
    if job is None or job.tenant_id != current_tenant_id():
        raise NotFound("The job does not exist", code="job_not_found")
    return job


def lock_job(job_id: str) -> TransferJob | None:
    """The job's row, locked until the transaction ends (None once it was deleted), with
    the values the lock read: populate_existing, since an instance the session already
    holds (loaded earlier in this transaction, e.g. for the file reader) would otherwise
    keep its older values, and a second worker on the job would pass the resume check on a
    stale `records_done` and write a batch the first one already wrote."""
    statement = (
        select(TransferJob)
        .where(TransferJob.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return db.session.scalar(statement)


def touch(job: TransferJob) -> None:
    job.heartbeat_at = utcnow()


def write_file(job: TransferJob, kind: str, pieces: Iterable[bytes]) -> int:
    """Store `pieces` as the job's `kind` file (input | output), in CHUNK_BYTES chunks,
    each inserted and forgotten (the session keeps none); how many bytes were written."""
    buffer, seq, size = bytearray(), 0, 0
    table = TransferChunk.__table__

    def flush(data: bytes) -> None:
        nonlocal seq
        db.session.execute(
            table.insert().values(
                tenant_id=job.tenant_id, job_id=job.id, kind=kind, seq=seq, data=data
            )
        )
        seq += 1

    for piece in pieces:
        buffer += piece
        size += len(piece)
        while len(buffer) >= CHUNK_BYTES:
            flush(bytes(buffer[:CHUNK_BYTES]))
            del buffer[:CHUNK_BYTES]
    if buffer or seq == 0:
        flush(bytes(buffer))
    return size


def copy_stream(stream: BinaryIO, limit: int | None = None) -> Iterator[bytes]:
    """`stream` in CHUNK_BYTES pieces; ValueError once more than `limit` bytes came."""
    seen = 0
    while True:
        piece = stream.read(CHUNK_BYTES)
        if not piece:
            return
        seen += len(piece)
        if limit is not None and seen > limit:
            raise ValueError("the file is larger than the limit")
        yield piece


def read_chunks(job: TransferJob, kind: str) -> Iterator[bytes]:
    """The job's `kind` file, one chunk per query (never the whole file at once)."""
    table = TransferChunk.__table__
    seq = 0
    while True:
        data = db.session.execute(
            select(table.c.data).where(
                table.c.job_id == job.id, table.c.kind == kind, table.c.seq == seq
            )
        ).scalar()
        if data is None:
            return
        yield bytes(data)
        seq += 1


class ChunkReader:
    """A read-only binary file over a job's chunks (what ijson and gzip read from)."""

    def __init__(self, job: TransferJob, kind: str) -> None:
        self._chunks = read_chunks(job, kind)
        self._buffer = b""
        self.offset = 0  # bytes handed out so far

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            piece = next(self._chunks, None)
            if piece is None:
                break
            self._buffer += piece
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        self.offset += len(out)
        return out


def drop_file(job: TransferJob, kind: str) -> None:
    table = TransferChunk.__table__
    db.session.execute(delete(table).where(table.c.job_id == job.id, table.c.kind == kind))


def add_error(job: TransferJob, seq: int, user: dict[str, Any], errors: list[Any]) -> None:
    """Record one rejected user (seq: its index in the file, so a rerun overwrites none)."""
    table = TransferError.__table__
    db.session.execute(
        table.insert().values(
            tenant_id=job.tenant_id, job_id=job.id, seq=seq, user=user, errors=errors
        )
    )


def errors_of(job: TransferJob) -> list[dict[str, Any]]:
    """The rejected users of an import, in file order: `[{user, errors}]`."""
    table = TransferError.__table__
    rows = db.session.execute(
        select(table.c.user, table.c.errors).where(table.c.job_id == job.id).order_by(table.c.seq)
    )
    return [{"user": user, "errors": errors} for user, errors in rows]


def connection_id(tenant_id: str | None = None) -> str:
    """The id of the tenant's one database connection (`Username-Password-Authentication`)
    as Auth0's SDK sees it: `con_` and 16 characters, the same on every call."""
    return connection_service.database_connection_id(tenant_id)
