"""The console's Members page: who may use the console and with which role; an admin
grants a role by email and revokes one after a confirmation page (app.console.service,
the same rules and audit as POST/DELETE /tenants/{id}/console-members)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, redirect, request, url_for

from app.api.auth import public
from app.api.console import blp, page, show_form_on_error
from app.api.console.edge import console_tenant, console_view, current
from app.api.hosted.forms import load_form
from app.console import service as console_service
from app.core.http import accepts_form

ROLE_LABELS = {
    console_service.ADMIN: "Admin",
    console_service.SUPPORT: "Support",
    console_service.VIEWER: "Viewer",
}
NOTICES = {"granted": "The role was granted.", "revoked": "The role was revoked."}


class GrantForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=320))
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(console_service.ROLES))


def _members_context() -> dict[str, Any]:
    """The page's data as plain values (also shown again after a refused grant)."""
    console = current()
    members = console_service.list_members(tenant_id=console.user.tenant_id)
    return {
        "members": [
            {
                "user_id": member.user_id,
                "email": member.email,
                "role": ROLE_LABELS.get(member.role, member.role),
                "created_at": member.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                "granted_by": member.granted_by,
            }
            for member in members
        ],
        "roles": ROLE_LABELS,
    }


@blp.route("/members", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def members() -> Response:
    """List the console's members (an admin also grants and revokes)"""
    notice = NOTICES.get(request.args.get("done", ""))
    return page("members.html", notice=notice, **_members_context())


@blp.route("/members", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def grant_member() -> Response:
    """Grant a console role to the user with this email address"""
    show_form_on_error(
        "members.html", email=request.form.get("email", "")[:320], **_members_context()
    )
    form = load_form(GrantForm(), "Enter the user's email address and pick a role.")
    console = current()
    console_service.grant_member_by_email(
        tenant_id=console.user.tenant_id,
        email=form["email"],
        role=form["role"],
        actor=console.actor,
    )
    return redirect(url_for("console.members", done="granted"), code=303)  # type: ignore[return-value]


@blp.route("/members/<user_id>/revoke", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="admin")
def confirm_revoke(user_id: str) -> Response:
    """Ask to confirm taking a member's console role away"""
    member = console_service.get_member(tenant_id=current().user.tenant_id, user_id=user_id)
    return page(
        "revoke.html",
        member={
            "user_id": member.user_id,
            "email": member.email,
            "role": ROLE_LABELS.get(member.role, member.role),
        },
    )


@blp.route("/members/<user_id>/revoke", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def revoke_member(user_id: str) -> Response:
    """Take a member's console role away"""
    console = current()
    console_service.revoke_member(
        tenant_id=console.user.tenant_id, user_id=user_id, actor=console.actor
    )
    return redirect(url_for("console.members", done="revoked"), code=303)  # type: ignore[return-value]
