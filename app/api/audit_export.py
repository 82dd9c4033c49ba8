"""The audit log's CSV export, one for GET /audit-events.csv (platform) and the console's
Audit log page: the filtered events newest first, at most EXPORT_MAX_ROWS, with the API's
event fields as columns and formula-safe cells (app.api.csv_text)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.api.csv_text import csv_text
from app.api.fields import IsoDateTime, OutputSchema
from app.audit import service as audit_service


class AuditEventSchema(OutputSchema):
    id = ma.fields.String()
    action = ma.fields.String()
    actor = ma.fields.String()
    user_id = ma.fields.String(allow_none=True)
    target = ma.fields.String(allow_none=True)
    ip = ma.fields.String(allow_none=True)
    created_at = IsoDateTime()
    data = ma.fields.Dict()


AUDIT_CSV_COLUMNS = tuple(AuditEventSchema().fields)


def audit_csv(filters: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The events `filters` select (app.audit.service.list_events' arguments; `limit`
    EXPORT_MAX_ROWS unless given) as CSV, and the answer's headers: a download named
    audit-events.csv, and `X-Next-Cursor` (the cursor that continues) when more follow."""
    page = audit_service.list_events(
        **{"limit": audit_service.EXPORT_MAX_ROWS, **filters}, most=audit_service.EXPORT_MAX_ROWS
    )
    headers = {"Content-Disposition": 'attachment; filename="audit-events.csv"'}
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    return csv_text(AUDIT_CSV_COLUMNS, AuditEventSchema(many=True).dump(page.items)), headers
