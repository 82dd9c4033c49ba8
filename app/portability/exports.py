"""Auth0-compatible export jobs (`POST /api/v2/jobs/users-exports`): the job, the worker's
run that streams the tenant's users into a gzip'd NDJSON or CSV file kept in the job's
chunks (Auth0's field names, `fields[{name, export_as}]`, `limit`; never a password hash),
the signed, expiring download link `jobs.get` shows as `location`, and the clean-up of
expired exports."""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask import current_app
from sqlalchemy import ColumnElement, Select, or_, select

from app.audit import service as audit_service
from app.core import security
from app.core.db import db, utcnow
from app.core.errors import Forbidden, Invalid, NotFound
from app.core.jobs import enqueue_after_commit
from app.core.sweeps import Cleanup
from app.portability import jobs, user_lines
from app.portability.models import (
    COMPLETED,
    EXPORT,
    FAILED,
    OUTPUT,
    PENDING,
    PROCESSING,
    TransferJob,
)
from app.tenants import service as tenant_service

FORMATS = ("json", "csv")
MAX_FIELDS = 30  # Auth0's own cap
PAGE_SIZE = 1000
DOWNLOAD_PURPOSE = "gatehouse.export-download"
STALE_AFTER = timedelta(minutes=5)
# Auth0's user fields in the order a default export lists them. The JSON default holds
# them all; CSV cannot hold objects whole, so its default keeps the plain ones.
DEFAULT_FIELDS = (
    "user_id",
    "email",
    "email_verified",
    "username",
    "name",
    "given_name",
    "family_name",
    "nickname",
    "picture",
    "phone_number",
    "blocked",
    "created_at",
    "updated_at",
    "last_login",
    "logins_count",
    "identities",
    "app_metadata",
    "user_metadata",
)
CSV_DEFAULT_FIELDS = DEFAULT_FIELDS[:15]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def auth0_user(user: Mapping[str, Any], identities: list[dict[str, Any]]) -> dict[str, Any]:
    """A user row (user_lines.USER_COLUMNS) under Auth0's field names, as the management
    surface shows it (never the hash)."""
    return {
        "user_id": user["id"],
        "email": user["email"],
        "email_verified": user["email_verified"],
        "username": user["username"],
        "name": user["display_name"],
        "given_name": user["first_name"],
        "family_name": user["last_name"],
        "nickname": user["nickname"],
        "picture": user["photo_url"],
        "phone_number": user["phone_number"],
        "blocked": user["blocked"],
        "created_at": _iso(user["created_at"]),
        "updated_at": _iso(user["updated_at"]),
        "last_login": _iso(user["last_login_at"]),
        "logins_count": user["logins_count"],
        "identities": identities,
        "app_metadata": user["app_metadata"] or {},
        "user_metadata": user["user_metadata"] or {},
    }


_MISSING = object()


def _resolve(value: Any, path: str) -> Any:
    """`user_metadata.country`, `identities[0].connection`: a value inside the user, or
    _MISSING when any step is absent."""
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]") and part[1:-1].isdigit():
            index = int(part[1:-1])
            if not isinstance(value, list) or index >= len(value):
                return _MISSING
            value = value[index]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def _check_fields(fields: Any) -> list[dict[str, str]] | None:
    if fields is None:
        return None
    if not isinstance(fields, list) or not fields or len(fields) > MAX_FIELDS:
        raise Invalid(f"fields is a list of 1 to {MAX_FIELDS} fields", code="invalid_fields")
    checked = []
    for field in fields:
        name = field.get("name") if isinstance(field, dict) else None
        export_as = field.get("export_as") if isinstance(field, dict) else None
        if (
            not isinstance(name, str)
            or not name
            or (export_as is not None and (not isinstance(export_as, str) or not export_as))
        ):
            raise Invalid("Each field is {name, export_as?} of strings", code="invalid_fields")
        checked.append({"name": name, **({"export_as": export_as} if export_as else {})})
    return checked


def start_export(
    *,
    connection_id: str | None,
    format: str,
    fields: list[dict[str, Any]] | None,
    limit: int | None,
) -> TransferJob:
    """A pending export job of the current tenant, queued for the worker once the request
    commits; Invalid for an unknown format, bad fields or limit, NotFound for a connection
    that is not the tenant's."""
    if format not in FORMATS:
        raise Invalid("format must be json or csv", code="invalid_format")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise Invalid("limit must be at least 1", code="invalid_limit")
    if connection_id is not None and connection_id != jobs.connection_id():
        raise NotFound("The connection does not exist", code="connection_not_found")
    job = jobs.new_job(
        type=EXPORT,
        format=format,
        connection_id=jobs.connection_id(),
        fields=_check_fields(fields),
        limit=limit,
    )
    from app.portability import tasks  # the tasks module imports this one

    enqueue_after_commit(tasks.run_export_job, job.tenant_id, job.id)
    return job


def _rows(job: TransferJob) -> Iterator[dict[str, Any]]:
    """The job's users, as the file's objects: selected and renamed by `fields`."""
    wanted = job.fields or [
        {"name": name} for name in (CSV_DEFAULT_FIELDS if job.format == "csv" else DEFAULT_FIELDS)
    ]
    left = job.limit
    after: str | None = None
    while left is None or left > 0:
        users = user_lines.users_page(after, PAGE_SIZE if left is None else min(PAGE_SIZE, left))
        if not users:
            return
        identities = user_lines.identities_of(users)
        for user in users:
            profile = auth0_user(user, identities[user["id"]])
            row = {}
            for field in wanted:
                value = _resolve(profile, field["name"])
                if value is not _MISSING:
                    row[field.get("export_as", field["name"])] = value
            yield row
        after = users[-1]["id"]
        if left is not None:
            left -= len(users)


def _csv_cell(value: Any) -> str:
    """One CSV cell, with Auth0's OWASP CSV-injection escaping: a string gets a leading
    `'`, its double quotes doubled, and is wrapped in double quotes; objects go as JSON
    text (a string); booleans and numbers as they are; null empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return '"' + ("'" + value).replace('"', '""') + '"'


def _encoded(job: TransferJob, counter: list[int]) -> Iterator[bytes]:
    """The file's uncompressed bytes, a line at a time; counts the users in `counter`."""
    if job.format == "json":
        for row in _rows(job):
            counter[0] += 1
            yield json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        return
    headers = [f.get("export_as", f["name"]) for f in job.fields or []] or list(CSV_DEFAULT_FIELDS)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(headers)
    yield buffer.getvalue().encode()
    for row in _rows(job):
        counter[0] += 1
        yield (",".join(_csv_cell(row.get(header)) for header in headers) + "\n").encode()


def _gzipped(pieces: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    for piece in pieces:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


def run_export(job_id: str) -> None:
    """Write the export job's file, once: a job already finished (or deleted) is left
    alone; a rerun after a killed worker starts the file again (nothing was committed)."""
    # SKIP LOCKED: a second message for a job a worker is writing (a re-queue) goes at
    # once instead of holding a worker until the first commits.
    job = db.session.scalar(
        select(TransferJob).where(TransferJob.id == job_id).with_for_update(skip_locked=True)
    )
    if job is None or job.type != EXPORT or job.status not in (PENDING, PROCESSING):
        return
    job.status = PROCESSING
    jobs.touch(job)
    jobs.drop_file(job, OUTPUT)
    counter = [0]
    job.file_bytes = jobs.write_file(job, OUTPUT, _gzipped(_encoded(job, counter)))
    job.total = counter[0]
    job.status = COMPLETED
    job.finished_at = utcnow()
    audit_service.record(
        action="users.exported",
        actor="job",
        target=job.id,
        data={"format": job.format, "count": job.total},
    )


def stale_exports(now: datetime) -> Select[tuple[str, str]]:
    """Select (tenant id, job id) of export jobs still unfinished STALE_AFTER after they
    were created: their message was lost or their worker died (one still writing holds
    its row's lock, and the re-queued message then goes at once). What the
    `requeue-stuck` job sends again (portability.tasks.STALE_EXPORTS)."""
    return (
        select(TransferJob.tenant_id, TransferJob.id)
        .where(
            TransferJob.type == EXPORT,
            TransferJob.status.in_((PENDING, PROCESSING)),
            TransferJob.created_at < now - STALE_AFTER,
        )
        .order_by(TransferJob.created_at)
    )


def fail_export(job_id: str, reason: str) -> None:
    """Mark an export job failed (the worker's last word after an unexpected error)."""
    job = jobs.lock_job(job_id)
    if job is not None and job.status in (PENDING, PROCESSING):
        job.status, job.status_details, job.finished_at = FAILED, reason, utcnow()


def _secret_key() -> str:
    return current_app.config["SECRET_KEY"]


def download_url(job: TransferJob) -> str | None:
    """The signed link to a completed export's file (valid EXPORT_URL_TTL seconds), under
    the configured ISSUER; None until the file is written."""
    if job.type != EXPORT or job.status != COMPLETED:
        return None
    token = security.signed_dumps(
        _secret_key(), DOWNLOAD_PURPOSE, {"tid": job.tenant_id, "job": job.id}
    )
    issuer = current_app.config["ISSUER"].rstrip("/")
    return f"{issuer}/api/v2/jobs/{quote(job.id)}/download?sig={quote(token)}"


def _token_payload(token: str) -> dict[str, Any]:
    try:
        payload = security.signed_loads(
            _secret_key(), DOWNLOAD_PURPOSE, token, current_app.config["EXPORT_URL_TTL"]
        )
    except security.SignedTokenError as error:
        expired = str(error) == "expired"
        raise Forbidden(
            "The download link has expired" if expired else "The download link is not valid",
            code="download_link_expired" if expired else "download_link_invalid",
        ) from None
    if not isinstance(payload, dict) or not all(
        isinstance(payload.get(k), str) for k in ("tid", "job")
    ):
        raise Forbidden("The download link is not valid", code="download_link_invalid")
    return payload


def tenant_of_link(token: str | None) -> str | None:
    """The tenant a download link was signed for, or None when it is forged or expired
    (the download then refuses it, in the tenant-less scope)."""
    if not token:
        return None
    try:
        return _token_payload(token)["tid"]
    except Forbidden:
        return None


@dataclass
class Download:
    filename: str
    size: int
    chunks: Iterator[bytes]


def open_download(*, job_id: str, token: str) -> Download:
    """The export file a link names: Forbidden for a forged or expired link, NotFound for
    another job (or tenant), an expired export or one not finished."""
    payload = _token_payload(token)
    if payload["job"] != job_id:
        raise NotFound("The job does not exist", code="job_not_found")
    job = jobs.get_job(job_id)
    if job.type != EXPORT or job.status != COMPLETED:
        raise NotFound("The export has no file", code="job_not_found")
    tenant = tenant_service.get_tenant(job.tenant_id)
    # Named after the tenant, as Auth0 names its files (kept to characters safe in a header).
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", tenant.name).strip("-") or "users"
    filename = f"{name}.{job.format}.gz"
    size = job.file_bytes
    # The chunks are read after the view returns: the job leaves the session, so the
    # commit does not expire it (read_chunks needs only its id).
    db.session.expunge(job)
    return Download(filename=filename, size=size, chunks=jobs.read_chunks(job, OUTPUT))


def _expired(now: datetime) -> ColumnElement[bool]:
    cutoff = now - timedelta(seconds=current_app.config["EXPORT_RETENTION_SECONDS"])
    return (TransferJob.type == EXPORT) & or_(
        TransferJob.finished_at < cutoff, TransferJob.created_at < cutoff
    )


# What the periodic clean-up deletes (core.sweeps runs it across tenants): export jobs
# older than EXPORT_RETENTION_SECONDS, their files with them.
EXPIRED = Cleanup("expired exports", TransferJob, _expired)
