"""Device credentials: a device's public key registered for a user (create, list, delete).

A user may manage its own; other users' need the any-user scopes. The key must be a
public key that `cryptography` loads (PEM, or base64 of PEM or DER).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from app.core import security
from app.core.db import add_unique, db, utcnow
from app.core.errors import Conflict, Forbidden, Invalid, NotFound
from app.core.pagination import OffsetPage, paginate_by_offset
from app.core.tenancy import Principal
from app.credentials.models import DeviceCredential
from app.users import service as user_service

PUBLIC_KEY = "public_key"
MAX_KEY_CHARS = 16 * 1024


def _pem_of(value: str) -> str:
    """The key as PEM, after checking it loads as a public key; Invalid otherwise."""
    if len(value) > MAX_KEY_CHARS:
        raise _bad_key("The key is too long")
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key: Any = serialization.load_pem_public_key(text.encode())
        else:
            raw = base64.b64decode(text, validate=True)
            if raw.lstrip().startswith(b"-----BEGIN"):
                key = serialization.load_pem_public_key(raw)
            else:
                key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError, binascii.Error, UnicodeError) as exc:
        raise _bad_key("value is not a public key in PEM (or base64 PEM/DER) form") from exc
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _bad_key(message: str) -> Invalid:
    return Invalid(message, code="invalid_public_key", fields={"value": [message]})


def _owner_for(actor: Principal, user_id: str | None, any_scope: str) -> str | None:
    """The user a caller acts for: anyone with `any_scope`, else only itself (Forbidden)."""
    if actor.has(any_scope):
        return user_id
    if actor.is_user and user_id in (None, actor.user_id):
        return actor.user_id
    raise Forbidden(f"This credential lacks the scope {any_scope}", code="forbidden_user")


def create_public_key(
    *,
    actor: Principal,
    user_id: str | None,
    device_name: str,
    device_id: str,
    value: str,
    client_id: str | None,
) -> DeviceCredential:
    """Register a device's public key for a user (the caller itself when it is a user);
    Invalid (bad key, no user named), NotFound, Forbidden, Conflict (device registered),
    Unauthenticated `reauthentication_required` for a user adding a key to itself
    without a recent sign-in (a key is a credential)."""
    owner = _owner_for(actor, user_id, "create:device_credentials")
    if owner is None and actor.is_user:
        owner = actor.user_id  # a user registers its own devices unless it names another
    if owner is None:
        raise Invalid(
            "user_id names the user the key is for",
            code="user_id_required",
            fields={"user_id": ["Missing data for required field."]},
        )
    user = user_service.get_user(owner)
    user_service.check_recent_sign_in(actor=actor, user=user)
    credential = DeviceCredential(
        id=f"dcr_{security.random_hex(12)}",
        tenant_id=user.tenant_id,
        user_id=user.id,
        device_name=device_name,
        device_id=device_id,
        type=PUBLIC_KEY,
        value=_pem_of(value),
        client_id=client_id,
        created_at=utcnow(),
    )
    add_unique(
        credential,
        Conflict("This device already has a public key for the user", code="device_exists"),
    )
    return credential


def list_credentials(
    *,
    actor: Principal,
    user_id: str | None,
    client_id: str | None,
    type: str | None,
    page: int,
    per_page: int,
    with_total: bool,
) -> OffsetPage[DeviceCredential]:
    """A page of device credentials, filtered; a user without the any-user scope sees only
    its own (Forbidden for another user's)."""
    owner = _owner_for(actor, user_id, "read:device_credentials")
    query = select(DeviceCredential)
    if owner is not None:
        query = query.where(DeviceCredential.user_id == owner)
    if client_id is not None:
        query = query.where(DeviceCredential.client_id == client_id)
    if type is not None:
        query = query.where(DeviceCredential.type == type)
    return paginate_by_offset(
        query,
        order_by=(DeviceCredential.created_at, DeviceCredential.id),
        page=page,
        per_page=per_page,
        with_total=with_total,
    )


def count_credentials(*, user_id: str) -> int:
    """How many device credentials the user holds (in the tenant in scope)."""
    query = select(func.count()).select_from(DeviceCredential)
    return db.session.scalar(query.where(DeviceCredential.user_id == user_id)) or 0


def delete_credential(*, actor: Principal, credential_id: str) -> None:
    """Delete a device credential; NotFound for an unknown one and, alike, for another
    user's when the caller may manage only its own (its ids are not probed);
    Unauthenticated `reauthentication_required` for a user removing its own key without
    a recent sign-in."""
    credential = db.session.scalar(
        select(DeviceCredential).where(DeviceCredential.id == credential_id)
    )
    if credential is None or not (
        actor.has("delete:device_credentials")
        or (actor.is_user and credential.user_id == actor.user_id)
    ):
        raise NotFound("Device credential not found", code="device_credential_not_found")
    user_service.check_recent_sign_in(actor=actor, user=user_service.get_user(credential.user_id))
    db.session.delete(credential)
    db.session.flush()
