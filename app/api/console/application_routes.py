"""The console's Applications page: the tenant's registered applications (OAuth clients);
an admin registers one, changes its redirect URIs and allowed origins, rotates a
confidential app's client secret (the new one shown once) and deletes one after a
confirmation. The same service calls as /tenants/{id}/applications, the console member
as the audit actor."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, redirect, request, url_for

from app.api.auth import public
from app.api.console import blp, page, show_form_on_error
from app.api.console.admin_forms import FormSchema, posted, read_form, stamp
from app.api.console.edge import console_tenant, console_view, current
from app.applications import service as application_service
from app.applications.models import CONFIDENTIAL, PUBLIC, Application
from app.core.http import accepts_form

MAX_URIS = 20
TYPE_LABELS = {
    PUBLIC: "Public (browser or native app, no secret)",
    CONFIDENTIAL: "Confidential (server, has a secret)",
}
NOTICES = {"saved": "The application was saved.", "deleted": "The application was deleted."}
URI_FIELDS = ("redirect_uris", "allowed_origins")


def _uris(max_length: int) -> ma.fields.List:
    return ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=max_length)),
        validate=ma.validate.Length(max=MAX_URIS, error=f"At most {MAX_URIS} lines."),
        load_default=list,
    )


class UrisForm(FormSchema):
    redirect_uris = _uris(2048)
    allowed_origins = _uris(255)


class RegisterForm(UrisForm):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    type = ma.fields.String(required=True, validate=ma.validate.OneOf(application_service.TYPES))


def _tenant_id() -> str:
    return current().user.tenant_id


def _row(application: Application) -> dict[str, Any]:
    return {
        "client_id": application.id,
        "name": application.name,
        "type": application.type,
        "confidential": application.is_confidential,
        "redirect_uris": list(application.redirect_uris),
        "allowed_origins": list(application.allowed_origins),
        "created_at": stamp(application.created_at),
    }


def _list_context() -> dict[str, Any]:
    found = application_service.list_applications(tenant_id=_tenant_id())
    return {"applications": [_row(a) for a in found], "types": TYPE_LABELS}


@blp.route("/applications", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def applications() -> Response:
    """List the tenant's applications (an admin also registers one)"""
    notice = NOTICES.get(request.args.get("done", ""))
    return page("applications.html", notice=notice, values={}, **_list_context())


@blp.route("/applications", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def register_application() -> Response:
    """Register an application (a confidential app's secret is shown on the answer only)"""
    show_form_on_error("applications.html", values=posted(), **_list_context())
    form = read_form(RegisterForm(), "Check the highlighted fields.", lines=URI_FIELDS)
    issued = application_service.create_application(
        tenant_id=_tenant_id(), actor=current().actor, **form
    )
    return _shown_once(
        issued, "Application registered", f"{issued.application.name} was registered."
    )


def _shown_once(
    issued: application_service.IssuedApplication, heading: str, notice: str
) -> Response:
    application = issued.application
    return page(
        "shown_once.html",
        heading=heading,
        notice_text=notice,
        facts=[("Name", application.name), ("Client id", application.id)],
        secret=issued.client_secret,
        secret_label="Client secret",
        kept_as="a hash of it",
        back=url_for("console.application", client_id=application.id),
        back_label="Go to the application",
    )


@blp.route("/applications/<client_id>", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def application(client_id: str) -> Response:
    """Show an application (an admin also changes its URIs and origins)"""
    notice = NOTICES.get(request.args.get("done", ""))
    return page("application.html", notice=notice, **_application_context(client_id))


def _application_context(client_id: str) -> dict[str, Any]:
    found = application_service.get_application(tenant_id=_tenant_id(), client_id=client_id)
    row = _row(found)
    return {"app": row, "values": {key: "\n".join(row[key]) for key in URI_FIELDS}}


@blp.route("/applications/<client_id>", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def update_application(client_id: str) -> Response:
    """Change an application's redirect URIs and allowed origins"""
    context = _application_context(client_id)
    show_form_on_error("application.html", **{**context, "values": posted()})
    form = read_form(UrisForm(), "Check the highlighted fields.", lines=URI_FIELDS)
    application_service.update_application(tenant_id=_tenant_id(), client_id=client_id, fields=form)
    return redirect(url_for("console.application", client_id=client_id, done="saved"), code=303)  # type: ignore[return-value]


@blp.route("/applications/<client_id>/rotate-secret", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="admin")
def confirm_rotate_application_secret(client_id: str) -> Response:
    """Ask to confirm giving a confidential application a new client secret"""
    row = _application_context(client_id)["app"]
    return page(
        "confirm_action.html",
        heading="Rotate the client secret",
        question=f"Give {row['name']} a new client secret?",
        consequence="The current secret stops working at once: the application must be "
        "given the new one, which is shown only on the next page.",
        action=url_for("console.rotate_application_secret", client_id=client_id),
        button="Rotate the secret",
        cancel=url_for("console.application", client_id=client_id),
    )


@blp.route("/applications/<client_id>/rotate-secret", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def rotate_application_secret(client_id: str) -> Response:
    """Rotate a confidential application's client secret (shown on this answer only)"""
    issued = application_service.rotate_secret(
        tenant_id=_tenant_id(), client_id=client_id, actor=current().actor
    )
    return _shown_once(
        issued, "New client secret", "The secret was rotated: the old one no longer works."
    )


@blp.route("/applications/<client_id>/delete", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="admin")
def confirm_delete_application(client_id: str) -> Response:
    """Ask to confirm deleting an application"""
    row = _application_context(client_id)["app"]
    return page(
        "confirm_action.html",
        heading="Delete an application",
        question=f"Delete {row['name']} ({row['client_id']})?",
        consequence="Every session started through it ends, and it can no longer sign "
        "anyone in. This cannot be undone.",
        action=url_for("console.delete_application", client_id=client_id),
        button="Delete the application",
        cancel=url_for("console.application", client_id=client_id),
    )


@blp.route("/applications/<client_id>/delete", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def delete_application(client_id: str) -> Response:
    """Delete an application and end every session it started"""
    application_service.delete_application(
        tenant_id=_tenant_id(), client_id=client_id, actor=current().actor
    )
    return redirect(url_for("console.applications", done="deleted"), code=303)  # type: ignore[return-value]
