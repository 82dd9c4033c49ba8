"""The download of an export job's file: the `location` that `GET /api/v2/jobs/{id}`
shows. Public (a browser or curl follows it without credentials): the signed link names
the tenant and the job, and expires after EXPORT_URL_TTL."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, request, stream_with_context

from app.api.auth import public
from app.api.fields import StrictSchema
from app.api.management import blp
from app.portability import exports as export_service


# Kept here rather than in schemas.py: the one shape of the one route of this module.
class DownloadQuerySchema(StrictSchema):
    sig = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2048))


def _link_tenant() -> str | None:
    return export_service.tenant_of_link(request.args.get("sig"))


@blp.route("/api/v2/jobs/<job_id>/download", methods=["GET"])
@public(tenant_from=_link_tenant)
@blp.arguments(DownloadQuerySchema, location="query")
@blp.errors(400, 403, 404)
@blp.response(
    200,
    {"type": "string", "format": "binary"},
    content_type="application/gzip",
    description="The export file: gzip'd NDJSON (json) or CSV (csv)",
)
def download_export(query: dict[str, Any], job_id: str) -> Response:
    """Download an export job's file through its signed link (no credentials)"""
    download = export_service.open_download(job_id=job_id, token=query["sig"])
    response = Response(stream_with_context(download.chunks), mimetype="application/gzip")
    response.headers["Content-Length"] = str(download.size)
    response.headers["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
