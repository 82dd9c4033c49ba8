"""Shapes of the management surface for jobs: the multipart body of an import job, the JSON
body of an export job, a job as `GET /api/v2/jobs/{id}` shows it, and the per-user errors
of an import."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest.fields import Upload
from werkzeug.datastructures import FileStorage

from app.api.fields import IsoDateTime, OutputSchema, StrictSchema
from app.portability import exports

# Auth0's id patterns (its API refuses other shapes with 400 before looking anything up).
CONNECTION_ID_PATTERN = r"^con_[A-Za-z0-9]{16}\Z"
_connection_id = ma.validate.Regexp(
    CONNECTION_ID_PATTERN, error="String does not match pattern ^con_[A-Za-z0-9]{{16}}$"
)
EXPORT_FORMATS = exports.FORMATS
MAX_EXPORT_FIELDS = exports.MAX_FIELDS


class FormBoolean(ma.fields.Boolean):
    """A multipart field's boolean: `true` or `false`, as the SDK (httpx) writes them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(truthy={"true"}, falsy={"false"}, **kwargs)


class UsersFile(Upload):
    """The `users` part: a file, never a plain field."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, FileStorage):
            raise ma.ValidationError("Must be a file part (Content-Disposition with a filename).")
        return value


class CreateImportSchema(StrictSchema):
    """`POST /api/v2/jobs/users-imports`, multipart/form-data."""

    users = UsersFile(
        required=True,
        metadata={"description": "A JSON array of users in Auth0's bulk-import schema"},
    )
    connection_id = ma.fields.String(required=True, validate=_connection_id)
    upsert = FormBoolean(load_default=False)
    external_id = ma.fields.String(validate=ma.validate.Length(max=255))
    # Recorded as given (Auth0's default is true); there is no tenant owner to mail here.
    send_completion_email = FormBoolean(load_default=True)


class ExportFieldSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    export_as = ma.fields.String(validate=ma.validate.Length(min=1, max=128), allow_none=True)


class CreateExportSchema(StrictSchema):
    """`POST /api/v2/jobs/users-exports`."""

    connection_id = ma.fields.String(validate=_connection_id, allow_none=True)
    format = ma.fields.String(
        load_default="csv", validate=ma.validate.OneOf(EXPORT_FORMATS), allow_none=False
    )
    limit = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**31 - 1), allow_none=True)
    fields = ma.fields.List(
        ma.fields.Nested(ExportFieldSchema),
        validate=ma.validate.Length(min=1, max=MAX_EXPORT_FIELDS),
        allow_none=True,
    )


class JobSummarySchema(OutputSchema):
    failed = ma.fields.Integer()
    updated = ma.fields.Integer()
    inserted = ma.fields.Integer()
    total = ma.fields.Integer()


class ExportFieldOutSchema(OutputSchema):
    name = ma.fields.String()
    export_as = ma.fields.String()


class JobSchema(OutputSchema):
    """A job as Auth0 shows it; properties that do not apply are left out (not null)."""

    status = ma.fields.String(
        required=True, metadata={"enum": ["pending", "processing", "completed", "failed"]}
    )
    type = ma.fields.String(required=True, metadata={"enum": ["users_import", "users_export"]})
    created_at = IsoDateTime()
    id = ma.fields.String(required=True)
    connection_id = ma.fields.String()
    external_id = ma.fields.String()
    format = ma.fields.String(metadata={"enum": list(EXPORT_FORMATS)})
    limit = ma.fields.Integer()
    fields = ma.fields.List(ma.fields.Nested(ExportFieldOutSchema))
    summary = ma.fields.Nested(JobSummarySchema)
    status_details = ma.fields.String()
    location = ma.fields.String(metadata={"description": "A signed, expiring download URL"})
    percentage_done = ma.fields.Integer()
    time_left_seconds = ma.fields.Integer()

    @ma.post_dump
    def _drop_absent(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}


class JobErrorSchema(OutputSchema):
    code = ma.fields.String()
    message = ma.fields.String()
    path = ma.fields.String()


class JobUserErrorsSchema(OutputSchema):
    """One rejected user: the user as the file gave it (hashes and secrets left out)."""

    user = ma.fields.Dict()
    errors = ma.fields.List(ma.fields.Nested(JobErrorSchema))


class JobFailureSchema(OutputSchema):
    """A job that failed as a whole (its file could not be read)."""

    status = ma.fields.String(required=True)
    type = ma.fields.String(required=True)
    created_at = IsoDateTime()
    id = ma.fields.String(required=True)
    connection_id = ma.fields.String()
    status_details = ma.fields.String()

    @ma.post_dump
    def _drop_absent(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}
