"""The console's Webhooks page: the tenant's endpoints, and one endpoint's delivery log
(newest first, keyset paged, filtered by status). An admin registers an endpoint (its
signing secret shown once), enables or disables it, sends it a test message, rotates its
secret, deletes it after a confirmation, and replays a delivery. The same service calls
as /tenants/{id}/webhooks, the console member as the audit actor."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, redirect, request, url_for

from app.api.auth import public
from app.api.console import blp, page, show_form_on_error
from app.api.console.admin_forms import FormSchema, posted, read_form, stamp
from app.api.console.edge import console_tenant, console_view, current
from app.core.http import accepts_form
from app.webhooks import service as webhook_service
from app.webhooks.events import EVENT_TYPES
from app.webhooks.models import WebhookEndpoint, WebhookMessage
from app.webhooks.targets import MAX_URL_LENGTH

PAGE_SIZE = 25
NOTICES = {
    "enabled": "The endpoint was enabled.",
    "disabled": "The endpoint was disabled: nothing is sent to it until it is enabled again.",
    "tested": "A webhook.test message was queued for the endpoint.",
    "replayed": "The delivery was queued again, with the same webhook-id and body.",
    "deleted": "The endpoint and its delivery log were deleted.",
}
STATUSES = webhook_service.MESSAGE_STATUSES
EVENT_OPTIONS = [(event, event, "") for event in EVENT_TYPES]


class CreateWebhookForm(FormSchema):
    url = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=MAX_URL_LENGTH))
    description = ma.fields.String(validate=ma.validate.Length(max=255))
    event_types = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(EVENT_TYPES)), load_default=list
    )


class EnabledForm(FormSchema):
    enabled = ma.fields.Boolean(required=True)


def _endpoint_row(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types) or ["all events"],
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": stamp(endpoint.created_at),
    }


def _message_row(message: WebhookMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "event_type": message.event_type,
        "status": message.status,
        "attempts": message.attempts,
        "last_status_code": message.last_status_code,
        "last_error": message.last_error,
        "last_attempt_at": stamp(message.last_attempt_at),
        "created_at": stamp(message.created_at),
    }


def _list_context() -> dict[str, Any]:
    return {
        "endpoints": [_endpoint_row(e) for e in webhook_service.list_endpoints()],
        "event_options": EVENT_OPTIONS,
    }


@blp.route("/webhooks", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def webhooks() -> Response:
    """List the tenant's webhook endpoints (an admin also registers one)"""
    notice = NOTICES.get(request.args.get("done", ""))
    return page("webhooks.html", notice=notice, values={"event_types": []}, **_list_context())


@blp.route("/webhooks", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def create_webhook() -> Response:
    """Register a webhook endpoint (its signing secret is shown on this answer only)"""
    show_form_on_error("webhooks.html", values=posted(multi=["event_types"]), **_list_context())
    form = read_form(CreateWebhookForm(), "Check the highlighted fields.", multi=["event_types"])
    issued = webhook_service.create_endpoint(actor=current().actor, **form)
    return _shown_once(issued, "Webhook endpoint registered", "The endpoint was registered.")


def _shown_once(issued: webhook_service.IssuedEndpoint, heading: str, notice: str) -> Response:
    return page(
        "shown_once.html",
        heading=heading,
        notice_text=notice,
        facts=[("Endpoint", issued.endpoint.id), ("URL", issued.endpoint.url)],
        secret=issued.secret,
        secret_label="Signing secret",
        kept_as="an encrypted copy, to sign deliveries",
        back=url_for("console.webhook", webhook_id=issued.endpoint.id),
        back_label="Go to the endpoint",
    )


@blp.route("/webhooks/<webhook_id>", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def webhook(webhook_id: str) -> Response:
    """Show a webhook endpoint and its deliveries (filter by status, older pages)"""
    # A status the filter does not offer (a hand-edited URL) shows every delivery.
    status = request.args.get("status") if request.args.get("status") in STATUSES else None
    cursor = request.args.get("cursor", "")[:512] or None
    endpoint = webhook_service.get_endpoint(webhook_id)
    found = webhook_service.list_messages(
        endpoint_id=endpoint.id, limit=PAGE_SIZE, status=status, cursor=cursor
    )
    return page(
        "webhook.html",
        notice=NOTICES.get(request.args.get("done", "")),
        endpoint=_endpoint_row(endpoint),
        deliveries=[_message_row(m) for m in found.items],
        filter_status=status,
        statuses=STATUSES,
        paged=cursor is not None,
        older=url_for(
            "console.webhook", webhook_id=endpoint.id, status=status, cursor=found.next_cursor
        )
        if found.next_cursor
        else None,
    )


def _back(webhook_id: str, done: str) -> Response:
    return redirect(url_for("console.webhook", webhook_id=webhook_id, done=done), code=303)  # type: ignore[return-value]


@blp.route("/webhooks/<webhook_id>/enabled", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def set_webhook_enabled(webhook_id: str) -> Response:
    """Enable or disable a webhook endpoint"""
    form = read_form(EnabledForm(), "Choose to enable or disable the endpoint.")
    webhook_service.update_endpoint(
        actor=current().actor, endpoint_id=webhook_id, fields={"enabled": form["enabled"]}
    )
    return _back(webhook_id, "enabled" if form["enabled"] else "disabled")


@blp.route("/webhooks/<webhook_id>/test", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def test_webhook(webhook_id: str) -> Response:
    """Send a webhook.test message to the endpoint"""
    webhook_service.send_test(endpoint_id=webhook_id)
    return _back(webhook_id, "tested")


@blp.route("/webhooks/<webhook_id>/messages/<message_id>/replay", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def replay_webhook_message(webhook_id: str, message_id: str) -> Response:
    """Send a delivery again, with the same webhook-id and body"""
    webhook_service.replay(actor=current().actor, endpoint_id=webhook_id, message_id=message_id)
    return _back(webhook_id, "replayed")


@blp.route("/webhooks/<webhook_id>/rotate-secret", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="admin")
def confirm_rotate_webhook_secret(webhook_id: str) -> Response:
    """Ask to confirm giving an endpoint a new signing secret"""
    endpoint = webhook_service.get_endpoint(webhook_id)
    return page(
        "confirm_action.html",
        heading="Rotate the signing secret",
        question=f"Give the endpoint {endpoint.url} a new signing secret?",
        consequence="For a grace period deliveries carry signatures by both secrets, so "
        "the receiver can switch without losing a message. The new secret is shown only "
        "on the next page.",
        action=url_for("console.rotate_webhook_secret", webhook_id=endpoint.id),
        button="Rotate the secret",
        cancel=url_for("console.webhook", webhook_id=endpoint.id),
    )


@blp.route("/webhooks/<webhook_id>/rotate-secret", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def rotate_webhook_secret(webhook_id: str) -> Response:
    """Rotate an endpoint's signing secret (the new one is shown on this answer only)"""
    issued = webhook_service.rotate_secret(actor=current().actor, endpoint_id=webhook_id)
    return _shown_once(issued, "New signing secret", "The signing secret was rotated.")


@blp.route("/webhooks/<webhook_id>/delete", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="admin")
def confirm_delete_webhook(webhook_id: str) -> Response:
    """Ask to confirm deleting a webhook endpoint"""
    endpoint = webhook_service.get_endpoint(webhook_id)
    return page(
        "confirm_action.html",
        heading="Delete a webhook endpoint",
        question=f"Delete the endpoint {endpoint.url}?",
        consequence="Its delivery log goes with it, and its pending messages are never sent.",
        action=url_for("console.delete_webhook", webhook_id=endpoint.id),
        button="Delete the endpoint",
        cancel=url_for("console.webhook", webhook_id=endpoint.id),
    )


@blp.route("/webhooks/<webhook_id>/delete", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def delete_webhook(webhook_id: str) -> Response:
    """Delete a webhook endpoint and its delivery log"""
    webhook_service.delete_endpoint(actor=current().actor, endpoint_id=webhook_id)
    return redirect(url_for("console.webhooks", done="deleted"), code=303)  # type: ignore[return-value]
