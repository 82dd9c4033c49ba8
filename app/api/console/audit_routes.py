"""The console's Audit log page: the tenant's audit events newest first, filtered by actor,
action, user and time range, cursor paged, and the filtered set exported as CSV; the same
service and CSV code as GET /audit-events and /audit-events.csv (app.audit.service,
app.api.audit_export)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import marshmallow as ma
from flask import Response, request

from app.api.audit_export import audit_csv
from app.api.auth import public
from app.api.console import blp, page, show_form_on_error
from app.api.console.edge import console_tenant, console_view, current
from app.api.hosted.forms import load_form
from app.audit import service as audit_service

ACTIONS = sorted(audit_service.ACTIONS)
FILTERS = ("actor", "action", "user_id", "from", "to")
PAGE_SIZE = 50


class AuditFilterForm(ma.Schema):
    """The filter form's query (its inputs are named as the API's query parameters)."""

    class Meta:
        unknown = ma.EXCLUDE

    actor = ma.fields.String(validate=ma.validate.Length(min=1, max=255))
    action = ma.fields.String(
        validate=ma.validate.OneOf(ACTIONS, error="Pick an action from the list.")
    )
    user_id = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    since = ma.fields.AwareDateTime(
        data_key="from", default_timezone=UTC, error_messages={"invalid": "Enter a date and time."}
    )
    until = ma.fields.AwareDateTime(
        data_key="to", default_timezone=UTC, error_messages={"invalid": "Enter a date and time."}
    )
    cursor = ma.fields.String(validate=ma.validate.Length(max=512))


def _filters() -> tuple[dict[str, str], dict[str, Any]]:
    """The filled-in filters as typed (shown again) and as the service takes them;
    Invalid `invalid_form` shows the form again with the fields' messages."""
    typed = {
        name: request.args.get(name, "").strip()[:512]
        for name in (*FILTERS, "cursor")
        if request.args.get(name, "").strip()
    }
    show_form_on_error("audit.html", form=typed, actions=ACTIONS, events=None, **_you())
    return typed, load_form(AuditFilterForm(), "Check the filters marked below.", typed)


def _you() -> dict[str, str]:
    return {"you": current().actor.label}


def _row(event: Any) -> dict[str, Any]:
    return {
        "created_at": event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "action": event.action,
        "actor": event.actor,
        "user_id": event.user_id,
        "target": event.target,
        "ip": event.ip,
        "data": event.data or {},
    }


@blp.route("/audit", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def audit() -> Response:
    """List the tenant's audit events, newest first, filtered"""
    typed, filters = _filters()
    found = audit_service.list_events(**filters, limit=PAGE_SIZE)
    kept = {name: value for name, value in typed.items() if name != "cursor"}
    return page(
        "audit.html",
        form=typed,
        actions=ACTIONS,
        events=[_row(event) for event in found.items],
        next_query={**kept, "cursor": found.next_cursor} if found.next_cursor else None,
        first_query=kept if "cursor" in typed else None,
        export_query=kept,
        export_max=audit_service.EXPORT_MAX_ROWS,
        **_you(),
    )


@blp.route("/audit.csv", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def audit_export() -> Response:
    """Download the filtered audit events as CSV (the newest EXPORT_MAX_ROWS)"""
    _typed, filters = _filters()
    filters.pop("cursor", None)
    text, headers = audit_csv(filters)
    return Response(text, mimetype="text/csv", headers=headers)
