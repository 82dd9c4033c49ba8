"""The console's API keys page: the tenant's keys (name, scopes, created, last used; never
a secret); an admin creates one with scopes picked from the catalogue (the key shown
once) and revokes one after a confirmation. The same service calls as
/tenants/{id}/api-keys."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, redirect, request, url_for

from app.api.auth import public
from app.api.console import blp, page, show_form_on_error
from app.api.console.admin_forms import FormSchema, posted, read_form, stamp
from app.api.console.edge import console_tenant, console_view, current
from app.core.http import accepts_form
from app.core.scopes import ADMIN, ALL, CATALOGUE, KEY, KEY_SCOPES, USER
from app.tenants import service as tenant_service
from app.tenants.models import ApiKey

NOTICES = {"revoked": "The API key was revoked: it is refused from now on."}
# The catalogue's scopes a key may hold, grouped as the form shows them.
SCOPE_GROUPS = [
    ("Every scope", [(ALL, ALL, "everything a tenant key may do, now and as scopes are added")]),
    *[
        (
            title,
            [(s.name, s.name, s.allows) for s in CATALOGUE if s.holders == holders],
        )
        for title, holders in (
            ("Any user of the tenant", ADMIN),
            ("Tenant management", KEY),
            ("The signed-in user itself", USER),
        )
    ],
]


PICK_ONE = "Pick at least one scope."


class CreateKeyForm(FormSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    # At least one: the service gives a key without scopes every scope (`*`).
    scopes = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(KEY_SCOPES)),
        required=True,
        validate=ma.validate.Length(min=1, error=PICK_ONE),
        error_messages={"required": PICK_ONE},
    )


def _tenant_id() -> str:
    return current().user.tenant_id


def _row(api_key: ApiKey) -> dict[str, Any]:
    return {
        "id": api_key.id,
        "name": api_key.name or "—",
        "scopes": list(api_key.scopes),
        "created_at": stamp(api_key.created_at),
        "last_used_at": stamp(api_key.last_used_at),
        "revoked_at": stamp(api_key.revoked_at) if api_key.revoked_at else None,
    }


def _list_context() -> dict[str, Any]:
    found = tenant_service.list_api_keys(tenant_id=_tenant_id())
    return {"keys": [_row(k) for k in found], "scope_groups": SCOPE_GROUPS}


@blp.route("/api-keys", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def api_keys() -> Response:
    """List the tenant's API keys (an admin also creates and revokes them)"""
    notice = NOTICES.get(request.args.get("done", ""))
    return page("api_keys.html", notice=notice, values={"scopes": []}, **_list_context())


@blp.route("/api-keys", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def create_api_key() -> Response:
    """Create an API key with the scopes picked (the key is shown on this answer only)"""
    show_form_on_error("api_keys.html", values=posted(multi=["scopes"]), **_list_context())
    form = read_form(CreateKeyForm(), "Check the highlighted fields.", multi=["scopes"])
    issued = tenant_service.issue_api_key(
        tenant_id=_tenant_id(),
        name=form["name"],
        scopes=form["scopes"],
        actor=current().actor,
    )
    return page(
        "shown_once.html",
        status=201,
        heading="API key created",
        notice_text=f"The key {issued.api_key.name} was created.",
        facts=[
            ("Name", issued.api_key.name),
            ("Key id", issued.api_key.id),
            ("Scopes", " ".join(issued.api_key.scopes)),
        ],
        secret=issued.raw_key,
        secret_label="API key",
        kept_as="a hash of it",
        back=url_for("console.api_keys"),
        back_label="Back to the API keys",
    )


@blp.route("/api-keys/<key_id>/revoke", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="admin")
def confirm_revoke_api_key(key_id: str) -> Response:
    """Ask to confirm revoking an API key"""
    row = _row(tenant_service.get_api_key(tenant_id=_tenant_id(), key_id=key_id))
    return page(
        "confirm_action.html",
        heading="Revoke an API key",
        question=f"Revoke the key {row['name']} ({row['id']})?",
        consequence="Every request made with it is refused from now on. This cannot be undone.",
        action=url_for("console.revoke_api_key", key_id=key_id),
        button="Revoke the key",
        cancel=url_for("console.api_keys"),
    )


@blp.route("/api-keys/<key_id>/revoke", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def revoke_api_key(key_id: str) -> Response:
    """Revoke an API key"""
    tenant_service.revoke_api_key(tenant_id=_tenant_id(), key_id=key_id, actor=current().actor)
    return redirect(url_for("console.api_keys", done="revoked"), code=303)  # type: ignore[return-value]
