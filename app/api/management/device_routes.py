"""Routes of the management surface for device credentials (public keys of devices)."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal, requires
from app.api.management import blp
from app.api.management.query import field_selection
from app.api.management.routes import page_answer
from app.api.management.schemas import (
    DEVICE_FIELDS,
    CreateDeviceCredentialSchema,
    CreatedIdSchema,
    DeviceCredentialPageSchema,
    DeviceCredentialSchema,
    ListDevicesQuerySchema,
)
from app.core.smorest import Dumped
from app.credentials import devices as device_service
from app.credentials.models import DeviceCredential

DEVICES_ANSWER = {
    "oneOf": [DeviceCredentialPageSchema, {"type": "array", "items": DeviceCredentialSchema}]
}


@blp.route("/api/v2/device-credentials", methods=["GET"])
@requires("read:device_credentials", "read:current_user", user_arg=None)
@blp.arguments(ListDevicesQuerySchema, location="query")
@blp.errors(400)
@blp.response(200, DEVICES_ANSWER)
def list_device_credentials(query: dict[str, Any]) -> Dumped:
    """List device credentials (a user's own, or filtered by user_id, client_id, type)"""
    found = device_service.list_credentials(
        actor=current_principal(),
        user_id=query.get("user_id"),
        client_id=query.get("client_id"),
        type=query.get("type"),
        page=query["page"],
        per_page=query["per_page"],
        with_total=query["include_totals"],
    )
    return page_answer(
        found,
        key="device_credentials",
        page_schema=DeviceCredentialPageSchema,
        item_schema=DeviceCredentialSchema,
        selection=field_selection(query.get("fields"), query["include_fields"], DEVICE_FIELDS),
        with_total=query["include_totals"],
    )


@blp.route("/api/v2/device-credentials", methods=["POST"])
@requires("create:device_credentials", "create:current_user_device_credentials", user_arg=None)
@blp.arguments(CreateDeviceCredentialSchema)
@blp.errors(400, 404, 409, 413, 415)
@blp.response(201, CreatedIdSchema)
def create_device_credential(body: dict[str, Any]) -> DeviceCredential:
    """Register a device's public key (for the calling user, or the user_id given)"""
    return device_service.create_public_key(
        actor=current_principal(),
        user_id=body.get("user_id"),
        device_name=body["device_name"],
        device_id=body["device_id"],
        value=body["value"],
        client_id=body.get("client_id"),
    )


@blp.route("/api/v2/device-credentials/<credential_id>", methods=["DELETE"])
@requires("delete:device_credentials", "delete:current_user_device_credentials", user_arg=None)
@blp.errors(404)
@blp.response(204)
def delete_device_credential(credential_id: str) -> None:
    """Delete a device credential"""
    device_service.delete_credential(actor=current_principal(), credential_id=credential_id)
