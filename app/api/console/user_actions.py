"""The console's actions on a user (role action "act"): block and unblock, delete after
typing the email address, mail a password reset link, remove a second factor or the
recovery codes, sign out of every session, edit the metadata. Each calls the service the
matching public route calls, with the console member as the audit actor; each answers
with a redirect to the user's page (POST-redirect-GET) and a notice there."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import marshmallow as ma
from flask import Response, redirect, request, url_for

from app.api.auth import public
from app.api.console import blp, page, show_form_on_error
from app.api.console.edge import console_tenant, console_view, current
from app.api.console.user_routes import pretty_json, user_context
from app.api.hosted.forms import load_form
from app.core.errors import Invalid
from app.core.http import accepts_form
from app.core.inputs import loads_strict
from app.core.tenancy import Principal
from app.credentials import authentication_methods as method_service
from app.credentials import mfa as mfa_service
from app.credentials import reset as reset_service
from app.credentials import service as credential_service
from app.tokens import sessions as session_service
from app.users import service as user_service
from app.users.models import User
from app.users.profile import METADATA_FIELDS

# The console's "act" role stands for the Management API's `update:users`, which the
# profile service asks of an actor before it edits another user's fields (the console's
# actor carries no scopes of its own: its role is checked by console_view).
ACT_SCOPES = frozenset({"update:users"})


def _acting() -> Principal:
    return replace(current().actor, scopes=ACT_SCOPES)


def _back(user_id: str, done: str) -> Response:
    return redirect(url_for("console.user_detail", user_id=user_id, done=done), code=303)  # type: ignore[return-value]


def _user(user_id: str) -> User:
    """The user of the action (NotFound `user_not_found`), its page shown again if the
    action is refused."""
    show_form_on_error("user.html", **user_context(user_id))
    return user_service.get_user(user_id)


class BlockForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    blocked = ma.fields.Boolean(required=True)


@blp.route("/users/<user_id>/block", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="act")
def block_user(user_id: str) -> Response:
    """Block a user (blocked=true) or unblock it (blocked=false)"""
    user = _user(user_id)
    form = load_form(BlockForm(), "Choose to block or to unblock the user.")
    credential_service.update_account(
        actor=_acting(), user=user, changes={"blocked": form["blocked"]}
    )
    return _back(user_id, "blocked" if form["blocked"] else "unblocked")


@blp.route("/users/<user_id>/password-reset", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="act")
def send_password_reset(user_id: str) -> Response:
    """Mail the user a link to choose a new password"""
    user = _user(user_id)
    actor = current().actor
    reset_service.send_reset(tenant_id=actor.tenant_id, user=user, actor=actor.label, ip=actor.ip)
    return _back(user_id, "reset_sent")


@blp.route("/users/<user_id>/authentication-methods/<method_id>/delete", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="act")
def remove_method(user_id: str, method_id: str) -> Response:
    """Remove one of the user's second factors (the TOTP enrolment, or a passkey)"""
    user = _user(user_id)
    method_service.delete_method(actor=_acting(), user=user, method_id=method_id)
    return _back(user_id, "method_removed")


@blp.route("/users/<user_id>/recovery-codes/delete", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="act")
def remove_recovery_codes(user_id: str) -> Response:
    """Remove every recovery code of the user (as DELETE
    /api/v2/users/{id}/multifactor/recovery-code does)"""
    user = _user(user_id)
    mfa_service.remove(actor=_acting(), user=user, provider=mfa_service.RECOVERY_CODE)
    return _back(user_id, "codes_removed")


@blp.route("/users/<user_id>/sessions/delete", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="act")
def sign_out_user(user_id: str) -> Response:
    """Sign the user out of every session (its refresh tokens stop working)"""
    user = _user(user_id)
    actor = current().actor
    session_service.sign_out_everywhere(user=user, actor=actor.label, ip=actor.ip)
    return _back(user_id, "signed_out")


# --- delete, after typing the address ----------------------------------------------------


def _confirmation_of(user: User) -> str:
    """What the member must type to delete `user`: its email address (its id if none)."""
    return user.email or user.id


def _delete_context(user: User) -> dict[str, Any]:
    return {
        "user": {"id": user.id, "email": user.email, "name": user.display_name},
        "expected_label": "email address" if user.email else "user id",
    }


@blp.route("/users/<user_id>/delete", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="act")
def confirm_delete(user_id: str) -> Response:
    """Ask to confirm deleting a user by typing its email address"""
    return page("user_delete.html", **_delete_context(user_service.get_user(user_id)))


class DeleteForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    confirm = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=320))


@blp.route("/users/<user_id>/delete", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="act")
def delete_user(user_id: str) -> Response:
    """Delete a user once its email address was typed exactly"""
    user = user_service.get_user(user_id)
    typed = request.form.get("confirm", "")[:320]
    show_form_on_error("user_delete.html", confirm=typed, **_delete_context(user))
    form = load_form(DeleteForm(), "Type the address to confirm.")
    if form["confirm"] != _confirmation_of(user):
        message = f"This is not the user's {_delete_context(user)['expected_label']}."
        raise Invalid(message, code="confirmation_mismatch", fields={"confirm": [message]})
    user_service.delete_user(actor=current().actor, user=user)
    return redirect(url_for("console.users", done="deleted"), code=303)  # type: ignore[return-value]


# --- metadata ----------------------------------------------------------------------------


class JsonObjectText(ma.fields.Field):
    """A textarea holding a JSON object (blank: `{}`), parsed as strictly as a JSON body."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = value if isinstance(value, str) else ""
        if not text.strip():
            return {}
        try:
            parsed = loads_strict(text)
        except ValueError as exc:
            raise ma.ValidationError(f"This is not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ma.ValidationError('Enter a JSON object, such as {"plan": "pro"}.')
        return parsed


class MetadataForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    app_metadata = JsonObjectText(required=True)
    user_metadata = JsonObjectText(required=True)


def replacing(current_value: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The PATCH (merged one level deep, null removes a key) that turns `current_value`
    into `wanted`: what the textarea shows is what the user ends up with."""
    return {**{key: None for key in current_value if key not in wanted}, **wanted}


@blp.route("/users/<user_id>/metadata", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="act")
def edit_metadata(user_id: str) -> Response:
    """Edit a user's app_metadata and user_metadata as JSON"""
    user = user_service.get_user(user_id)
    return page(
        "user_metadata.html",
        user={"id": user.id, "email": user.email},
        app_metadata=pretty_json(user.app_metadata),
        user_metadata=pretty_json(user.user_metadata),
    )


@blp.route("/users/<user_id>/metadata", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="act")
def save_metadata(user_id: str) -> Response:
    """Save a user's app_metadata and user_metadata (each a JSON object)"""
    user = user_service.get_user(user_id)
    show_form_on_error(
        "user_metadata.html",
        user={"id": user.id, "email": user.email},
        **{name: request.form.get(name, "") for name in METADATA_FIELDS},
    )
    form = load_form(MetadataForm(), "Correct the metadata: each must be a JSON object.")
    changes = {
        name: replacing(getattr(user, name) or {}, form[name])
        for name in METADATA_FIELDS
        if form[name] != (getattr(user, name) or {})
    }
    if changes:
        credential_service.update_account(actor=_acting(), user=user, changes=changes)
    return _back(user_id, "metadata_saved")
