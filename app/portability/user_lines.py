"""Every user of the current tenant as one JSON object each, with everything Gatehouse
holds for it (profile, policies, linked identities, properties, device keys; hashes,
TOTP and user secrets only when asked), read in keyset pages by id so an export of a
million users never holds more than a page. The Gatehouse file format writes these, and
the Auth0 export jobs read the same pages.

Pages are plain rows (selects of ORM columns: the tenancy guard still filters them, and
no object enters the session), a few times faster than loading User objects and their
relationships, and with nothing to forget afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping

from app.core import security
from app.core.db import db, utcnow
from app.credentials import mfa
from app.credentials.models import DeviceCredential, MfaEnrolment
from app.portability.records import PROFILE_FIELDS
from app.properties.models import Property
from app.secrets import service as secret_service
from app.secrets.models import Secret
from app.users.models import Identity, Policy, User, identity_dict, primary_identity

PAGE_SIZE = 1000
# What a user line carries of the row (the rest is a session's bookkeeping).
USER_COLUMNS = (
    "id",
    "username",
    "email",
    *PROFILE_FIELDS,
    "device_token",
    "device_type",
    "password_hash",
    "created_at",
    "updated_at",
    "last_login_at",
    "logins_count",
)


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


def users_page(after: str | None, size: int) -> list[RowMapping]:
    """Up to `size` users of the tenant in scope with ids above `after`, by id, as rows
    of USER_COLUMNS."""
    query = select(*(getattr(User, name) for name in USER_COLUMNS)).order_by(User.id).limit(size)
    if after is not None:
        query = query.where(User.id > after)
    return list(db.session.execute(query).mappings())


def _grouped(columns: tuple[Any, ...], ids: list[str], *order: Any) -> dict[str, list[Any]]:
    """Rows of `columns` (the first one a `user_id`) of these users, by user id."""
    grouped: dict[str, list[Any]] = {}
    query = select(*columns).where(columns[0].in_(ids)).order_by(*order)
    for row in db.session.execute(query):
        grouped.setdefault(row[0], []).append(row)
    return grouped


def identities_of(users: list[RowMapping]) -> dict[str, list[dict[str, Any]]]:
    """Each user's identities as every surface prints them: its own, then the linked."""
    linked = _grouped(
        (
            Identity.user_id,
            Identity.provider,
            Identity.provider_user_id,
            Identity.connection,
            Identity.is_social,
            Identity.profile_data,
        ),
        [user["id"] for user in users],
        Identity.id,
    )
    return {
        user["id"]: [
            primary_identity(user["id"], has_password=bool(user["password_hash"])),
            *(
                identity_dict(
                    provider=row.provider,
                    provider_user_id=row.provider_user_id,
                    connection=row.connection,
                    is_social=row.is_social,
                    profile_data=row.profile_data,
                )
                for row in linked.get(user["id"], ())
            ),
        ]
        for user in users
    }


def _orm_rows(model: Any, ids: list[str]) -> dict[str, list[Any]]:
    """Rows whose decryption binds the row itself (TOTP, secrets): loaded as objects,
    then forgotten."""
    grouped: dict[str, list[Any]] = {}
    for row in db.session.scalars(
        select(model).where(model.user_id.in_(ids)).order_by(model.created_at, model.id)
    ):
        grouped.setdefault(row.user_id, []).append(row)
        db.session.expunge(row)
    return grouped


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
        ids = [user["id"] for user in users]
        identities = identities_of(users)
        policies = _grouped(
            (Policy.user_id, Policy.resource, Policy.resource_type, Policy.type), ids, Policy.id
        )
        properties = _grouped(
            (Property.user_id, Property.name, Property.value), ids, Property.created_at, Property.id
        )
        devices = _grouped(
            (
                DeviceCredential.user_id,
                DeviceCredential.device_name,
                DeviceCredential.device_id,
                DeviceCredential.type,
                DeviceCredential.value,
                DeviceCredential.client_id,
                DeviceCredential.created_at,
            ),
            ids,
            DeviceCredential.created_at,
            DeviceCredential.id,
        )
        totps = _orm_rows(MfaEnrolment, ids) if mfa_secrets else {}
        values = _orm_rows(Secret, ids) if secrets else {}
        for user in users:
            user_id = user["id"]
            line = {name: user[name] for name in USER_COLUMNS if name != "password_hash"}
            for name in ("created_at", "updated_at", "last_login_at"):
                line[name] = _iso(user[name])
            line["policies"] = [
                {"resource": resource, "resource_type": kind, "type": access}
                for _, resource, kind, access in policies.get(user_id, ())
            ]
            line["identities"] = identities[user_id][1:]  # the linked ones
            line["properties"] = {name: value for _, name, value in properties.get(user_id, ())}
            line["device_credentials"] = [
                {
                    "device_name": name,
                    "device_id": device_id,
                    "type": kind,
                    "value": value,
                    "client_id": client_id,
                    "created_at": _iso(created_at),
                }
                for _, name, device_id, kind, value, client_id, created_at in devices.get(
                    user_id, ()
                )
            ]
            if password_hashes and user["password_hash"]:
                line["password_hash"] = user["password_hash"]
            for enrolment in totps.get(user_id, ()):
                if enrolment.type == mfa.TOTP and enrolment.status == mfa.CONFIRMED:
                    line["totp_secret"] = mfa.totp_secret(enrolment)
            if secrets:
                line["secrets"] = {
                    secret.name: security.keyring()
                    .decrypt(secret.value_encrypted, secret_service.associated_data(secret))
                    .decode("utf-8")
                    for secret in values.get(user_id, ())
                }
            yield line
        after = ids[-1]
