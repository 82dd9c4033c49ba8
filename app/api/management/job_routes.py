"""Routes of the management surface for jobs: user import jobs (a multipart upload streamed
into the job's chunks, then run by the Celery worker) into the tenant's database connection,
user export jobs, and a job's status and per-user errors."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app

from app.api.auth import current_principal, requires
from app.api.management import blp
from app.api.management.job_schemas import (
    CreateExportSchema,
    CreateImportSchema,
    JobFailureSchema,
    JobSchema,
    JobUserErrorsSchema,
)
from app.api.management.routes import answer
from app.core.errors import Forbidden, Invalid
from app.core.http import upload
from app.core.smorest import Dumped
from app.portability import exports, imports, jobs
from app.portability.models import COMPLETED, EXPORT, FAILED, PENDING, TransferJob

ERRORS_ANSWER = {"oneOf": [{"type": "array", "items": JobUserErrorsSchema}, JobFailureSchema]}


def _check_connection(connection_id: str | None) -> None:
    """Invalid (400, as Auth0 answers) unless `connection_id` names the tenant's connection."""
    if connection_id is not None and connection_id != jobs.connection_id():
        raise Invalid("The connection does not exist", code="connection_not_found")


@blp.route("/api/v2/jobs/users-imports", methods=["POST"])
@upload("IMPORT_MAX_BYTES")
@requires("create:users", user_arg=None)
@blp.arguments(CreateImportSchema, location="multipart")
@blp.errors(400, 403, 413, 415)
@blp.response(201, JobSchema)
def create_import_job(body: dict[str, Any]) -> dict[str, Any]:
    """Import users from a file in Auth0's bulk-import schema (multipart: `users` file,
    `connection_id`, `upsert`, `external_id`, `send_completion_email`). The file is at most
    IMPORT_MAX_BYTES (413 from Content-Length, before the body is read); the job runs on
    the worker. `upsert=true` needs update:users too"""
    if body["upsert"] and not current_principal().has("update:users"):
        raise Forbidden(
            "This credential lacks the scope update:users (needed for upsert)",
            code="insufficient_scope",
        )
    _check_connection(body["connection_id"])
    job = imports.start_import(
        body["users"].stream,
        upsert=body["upsert"],
        connection_id=body["connection_id"],
        external_id=body.get("external_id"),
        send_completion_email=body["send_completion_email"],
        max_bytes=current_app.config["IMPORT_MAX_BYTES"],
    )
    return {
        "status": job.status,
        "type": job.type,
        "created_at": job.created_at,
        "id": job.id,
        "connection_id": job.connection_id,
        "external_id": job.external_id,
    }


@blp.route("/api/v2/jobs/users-exports", methods=["POST"])
@requires("read:users", user_arg=None)
@blp.arguments(CreateExportSchema)
@blp.errors(400, 403)
@blp.response(201, JobSchema)
def create_export_job(body: dict[str, Any]) -> dict[str, Any]:
    """Export the tenant's users to a file (`format` json: gzip NDJSON; csv), with the
    `fields` asked for under Auth0's names; `GET /api/v2/jobs/{id}` then gives its
    `location`"""
    _check_connection(body.get("connection_id"))
    job = exports.start_export(
        connection_id=body.get("connection_id") or jobs.connection_id(),
        format=body["format"],
        fields=body.get("fields"),
        limit=body.get("limit"),
    )
    return job_view(job)


def job_view(job: TransferJob) -> dict[str, Any]:
    """The job as Auth0 shows it: a summary once an import runs, the download location of
    a completed export, the reason of a failure."""
    view: dict[str, Any] = {
        "status": job.status,
        "type": job.type,
        "created_at": job.created_at,
        "id": job.id,
        "connection_id": job.connection_id,
        "external_id": job.external_id,
        "status_details": job.status_details if job.status == FAILED else None,
    }
    if job.type == EXPORT:
        view.update(format=job.format, limit=job.limit, fields=job.fields)
        if job.status == COMPLETED:
            view["location"] = exports.download_url(job)
    elif job.status != PENDING:
        view["summary"] = {
            "failed": job.failed,
            "updated": job.updated,
            "inserted": job.inserted,
            "total": job.total,
        }
    if job.status == COMPLETED:
        view.update(percentage_done=100, time_left_seconds=0)
    elif job.status == PENDING:
        view["percentage_done"] = 0
    return view


@blp.route("/api/v2/jobs/<job_id>", methods=["GET"])
@requires(("read:users", "create:users"), user_arg=None)
@blp.errors(404)
@blp.response(200, JobSchema)
def get_job(job_id: str) -> dict[str, Any]:
    """Get a job: its status (pending, processing, completed, failed), an import's summary,
    a completed export's download location"""
    return job_view(jobs.get_job(job_id))


@blp.route("/api/v2/jobs/<job_id>/errors", methods=["GET"])
@requires(("read:users", "create:users"), user_arg=None)
@blp.errors(404)
@blp.response(200, ERRORS_ANSWER)
@blp.alt_response(204, description="The job has no errors")
def get_job_errors(job_id: str) -> Dumped | Response:
    """The errors of a job: the users an import rejected, `[{user, errors: [{code, message,
    path}]}]`; for a job that failed as a whole, the job and its status_details; 204 when
    there are none"""
    job = jobs.get_job(job_id)
    rejected = jobs.errors_of(job)
    if rejected:
        return answer(JobUserErrorsSchema(many=True), rejected)
    if job.status == FAILED:
        return answer(JobFailureSchema(), job)
    return Response(status=204)
