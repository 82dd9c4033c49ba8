"""Every user of the current tenant as one JSON object each, with everything Gatehouse
holds for it (profile, policies, linked identities, properties, device keys; hashes,
TOTP and user secrets only when asked), read in keyset pages by id so an export of a
million users never holds more than a page. The Gatehouse file format writes these."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.core import security
from app.core.db import db, utcnow
from app.credentials import mfa
from app.credentials.models import DeviceCredential, MfaEnrolment
from app.portability.records import PROFILE_FIELDS
from app.properties.models import Property
from app.secrets import service as secret_service
from app.secrets.models import Secret
from app.users.models import User

PAGE_SIZE = 1000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def new_device_credential(
    *, tenant_id: str, user_id: str, device: dict[str, Any]
) -> DeviceCredential:
    """A device credential of an imported user, from a checked user line's entry."""
    return DeviceCredential(
        id=f"dcr_{security.random_hex(12)}",
        tenant_id=tenant_id,
        user_id=user_id,
        device_name=device["device_name"],
        device_id=device["device_id"],
        type=device["type"],
        value=device["value"],
        client_id=device.get("client_id"),
        created_at=device.get("created_at") or utcnow(),
    )


def users_page(after: str | None, size: int) -> list[User]:
    """Up to `size` users of the tenant in scope with ids above `after`, by id, with their
    policies and linked identities loaded."""
    query = (
        select(User)
        .options(selectinload(User.policies), selectinload(User.linked_identities))
        .order_by(User.id)
        .limit(size)
    )
    if after is not None:
        query = query.where(User.id > after)
    return list(db.session.scalars(query))


def _by_user(model: Any, ids: list[str], *order: Any) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for row in db.session.scalars(select(model).where(model.user_id.in_(ids)).order_by(*order)):
        grouped.setdefault(row.user_id, []).append(row)
    return grouped


def _line(user: User) -> dict[str, Any]:
    line: dict[str, Any] = {"id": user.id, "username": user.username, "email": user.email}
    line.update({key: getattr(user, key) for key in PROFILE_FIELDS})
    line.update(
        device_token=user.device_token,
        device_type=user.device_type,
        created_at=_iso(user.created_at),
        updated_at=_iso(user.updated_at),
        last_login_at=_iso(user.last_login_at),
        logins_count=user.logins_count,
        policies=[
            {"resource": p.resource, "resource_type": p.resource_type, "type": p.type}
            for p in user.policies
        ],
        identities=[identity.as_dict() for identity in user.linked_identities],
    )
    return line


def lines(
    *, password_hashes: bool, mfa_secrets: bool, secrets: bool, page_size: int = PAGE_SIZE
) -> Iterator[dict[str, Any]]:
    """One dict per user of the tenant in scope, by id. `password_hashes` adds the stored
    string as is; `mfa_secrets` the confirmed TOTP secret in clear; `secrets` the user
    secrets' values in clear (the caller encrypts the file)."""
    after: str | None = None
    while True:
        users = users_page(after, page_size)
        if not users:
            return
        ids = [user.id for user in users]
        properties = _by_user(Property, ids, Property.created_at, Property.id)
        devices = _by_user(DeviceCredential, ids, DeviceCredential.created_at)
        totps = _by_user(MfaEnrolment, ids) if mfa_secrets else {}
        values = _by_user(Secret, ids, Secret.created_at, Secret.id) if secrets else {}
        loaded: list[Any] = [*users]
        for user in users:
            line = _line(user)
            line["properties"] = {p.name: p.value for p in properties.get(user.id, [])}
            line["device_credentials"] = [
                {
                    "device_name": d.device_name,
                    "device_id": d.device_id,
                    "type": d.type,
                    "value": d.value,
                    "client_id": d.client_id,
                    "created_at": _iso(d.created_at),
                }
                for d in devices.get(user.id, [])
            ]
            if password_hashes and user.password_hash:
                line["password_hash"] = user.password_hash
            for enrolment in totps.get(user.id, []):
                if enrolment.type == mfa.TOTP and enrolment.status == mfa.CONFIRMED:
                    line["totp_secret"] = mfa.totp_secret(enrolment)
            if secrets:
                line["secrets"] = {
                    s.name: security.keyring()
                    .decrypt(s.value_encrypted, secret_service.associated_data(s))
                    .decode("utf-8")
                    for s in values.get(user.id, [])
                }
            yield line
        for group in (properties, devices, totps, values):
            for rows in group.values():
                loaded += rows
        # Forget the page (a million users must not pile up in the identity map).
        for row in loaded:
            if row in db.session:
                db.session.expunge(row)
        after = ids[-1]
