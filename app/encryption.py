"""Every value the key ring protects, in one table, and what works on all of them:
re-encryption under the current key (key rotation), counting what is left under older
keys, proving the ring opens the instance's data (start-up, `/readyz`), and the record
of finished rotations (platform events `encryption.rotated`), against which a ring is
judged to be, or not to be, the one the data needs.

A new encrypted column is one line in ENCRYPTED_COLUMNS: its label, the mapped column and
the function giving a row's associated data (the bytes its ciphertext is bound to).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute

from app.audit import service as audit_service
from app.connections import secrets as connection_secrets
from app.connections.models import Connection
from app.core.db import db
from app.core.jobs import execute_all_tenants
from app.core.security import KeyRing, KeyRingError, keyring
from app.credentials import mfa
from app.credentials.models import MfaEnrolment
from app.mail import service as mail_service
from app.mail.models import EmailDelivery
from app.secrets import service as secret_service
from app.secrets.models import Secret
from app.tenants import service as tenant_service
from app.tenants.models import Tenant
from app.tokens import signing
from app.tokens.models import SigningKey
from app.webhooks import service as webhook_service
from app.webhooks.models import WebhookEndpoint


@dataclass(frozen=True)
class EncryptedColumn:
    label: str
    column: InstrumentedAttribute[Any]  # holds `v1.<key id>.<…>` or NULL
    associated_data: Callable[[Any], bytes]

    @property
    def model(self) -> Any:
        return self.column.class_

    @property
    def primary_key(self) -> tuple[Any, ...]:
        return tuple(self.model.__mapper__.primary_key)


ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn("user secrets", Secret.value_encrypted, secret_service.associated_data),
    EncryptedColumn(
        "signing keys",
        SigningKey.private_key_encrypted,
        lambda key: signing._associated_data(key.kid),
    ),
    EncryptedColumn(
        "tenant Postmark tokens",
        Tenant.postmark_server_token_encrypted,
        tenant_service.postmark_token_associated_data,
    ),
    EncryptedColumn("mail bodies", EmailDelivery.body_encrypted, mail_service.associated_data),
    EncryptedColumn("TOTP secrets", MfaEnrolment.secret_encrypted, mfa._associated_data),
    EncryptedColumn(
        "connection client secrets",
        Connection.client_secret_encrypted,
        connection_secrets.associated_data,
    ),
    EncryptedColumn(
        "webhook secrets", WebhookEndpoint.secret_encrypted, webhook_service.associated_data
    ),
    EncryptedColumn(
        "previous webhook secrets",
        WebhookEndpoint.previous_secret_encrypted,
        webhook_service.previous_associated_data,
    ),
)


class RotationError(Exception):
    """A stored value cannot be decrypted with any key of the ring."""


def _not_current(entry: EncryptedColumn, ring: KeyRing) -> Any:
    return entry.column.is_not(None) & entry.column.not_like(f"v1.{ring.current_key_id}.%")


def key_counts(entry: EncryptedColumn) -> dict[str, int]:
    """How many values of the column each key id made (`v1.<8-char key id>.…`), in every
    tenant."""
    key_id = func.substr(entry.column, 4, 8)
    rows = execute_all_tenants(
        select(key_id, func.count()).where(entry.column.is_not(None)).group_by(key_id)
    )
    return {kid: count for kid, count in rows}


def pending_count(entry: EncryptedColumn) -> int:
    """How many values of the column are not under the current key, in every tenant."""
    query = select(func.count()).select_from(entry.model).where(_not_current(entry, keyring()))
    return execute_all_tenants(query).scalar() or 0


def rotate_batch(
    entry: EncryptedColumn, *, after: tuple[Any, ...] | None, batch_size: int
) -> tuple[int, tuple[Any, ...] | None]:
    """Re-encrypt up to `batch_size` values not under the current key, in primary-key order
    after `after`; returns how many it saw and the last key (None when the column is done).
    The caller commits after each batch, so a stopped run resumes where it was."""
    ring = keyring()
    pk = entry.primary_key
    query = select(entry.model).where(_not_current(entry, ring)).order_by(*pk).limit(batch_size)
    if after is not None:
        query = query.where(tuple_(*pk) > tuple_(*after))
    table = entry.model.__table__
    name = entry.column.key
    # "SET updated_at = updated_at": new ciphertext of the same plaintext is no change a
    # client can see (versions, timestamps and ETags stay).
    unchanged = {c.name: c for c in table.c if c.onupdate is not None and c.name != name}
    last = None
    rows = list(execute_all_tenants(query).scalars())
    for row in rows:
        old = getattr(row, name)
        ad = entry.associated_data(row)
        last = tuple(getattr(row, col.key) for col in pk)
        try:
            plain = ring.decrypt(old, ad)
        except KeyRingError as exc:
            raise RotationError(
                f"{entry.label} {'/'.join(map(str, last))} (key id {ring.key_id_of(old)}): {exc}"
            ) from exc
        # Compare-and-set: a value rewritten meanwhile (already under the current key)
        # is left as it is.
        execute_all_tenants(
            table.update()
            .where(*(table.c[col.name] == value for col, value in zip(pk, last, strict=True)))
            .where(table.c[name] == old)
            .values({name: ring.encrypt(plain, ad), **unchanged})
        )
    return len(rows), (last if len(rows) == batch_size else None)


def rotate_column(
    entry: EncryptedColumn, *, batch_size: int, on_batch: Callable[[int], None]
) -> int:
    """Re-encrypt a whole column in committed batches (`on_batch(rows)` after each); how
    many values it rewrote."""
    total, after = 0, None
    while True:
        done, after = rotate_batch(entry, after=after, batch_size=batch_size)
        db.session.commit()
        total += done
        on_batch(done)
        if after is None:
            return total


def current_signing_key_problem() -> str | None:
    """Why the key ring cannot open this instance's current signing key, or None (opened,
    or nothing to open yet). Raises DBAPIError when the database cannot be asked."""
    entry = ENCRYPTED_COLUMNS[1]
    key = db.session.scalar(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc())
        .limit(1)
    )
    if key is None:
        return None
    ring = keyring()
    try:
        ring.decrypt(key.private_key_encrypted, entry.associated_data(key))
    except KeyRingError:
        made_by = ring.key_id_of(key.private_key_encrypted)
        return (
            f"ENCRYPTION_KEYS cannot open this instance's data: the current signing key "
            f"{key.kid} was encrypted with key id {made_by}, and the ring holds "
            f"{', '.join(ring.key_ids)}; put the key that made it back into ENCRYPTION_KEYS"
        )
    return None


def keyring_status() -> str:
    """For /readyz: `ok`, or why the ring cannot open the data."""
    try:
        problem = current_signing_key_problem()
    except DBAPIError as exc:
        db.session.rollback()
        return f"unchecked: {type(exc).__name__}"
    return "ok" if problem is None else "cannot open the current signing key"


ROTATED = "encryption.rotated"


@dataclass(frozen=True)
class Rotation:
    """A finished `rotate-encryption`: every value was then under `key_id`, and none under
    `retired` (the ring's other keys then)."""

    key_id: str
    at: datetime
    retired: tuple[str, ...]


def rotations() -> list[Rotation]:
    """The recorded rotations, newest first."""
    events = audit_service.list_platform_events(action=ROTATED, limit=100).items
    return [
        Rotation(
            key_id=event.target,
            at=event.created_at,
            retired=tuple(event.data.get("retired_key_ids", ())),
        )
        for event in events
    ]


def record_rotation(*, rewritten: dict[str, int]) -> None:
    """Record that every value is now under the ring's current key (the data's current key
    id from now on) and none under its other keys; the caller commits."""
    ring = keyring()
    audit_service.record_platform_event(
        action=ROTATED,
        actor="cli",
        target=ring.current_key_id,
        ip=None,
        data={"rewritten": rewritten, "retired_key_ids": list(ring.key_ids[1:])},
    )


def ring_mismatch(ring: KeyRing) -> str | None:
    """Why `ring` is not the ring this instance's data needs, by the recorded rotations:
    it lacks the key the data was last rotated to, or its first key is one the data was
    rotated away from. None when it fits (or nothing was rotated yet)."""
    history = rotations()
    if not history:
        return None
    last = history[0]
    when = f"{last.at:%Y-%m-%d %H:%M} UTC"
    if last.key_id not in ring.key_ids:
        return (
            f"the data was last rotated to key id {last.key_id} ({when}), and this ring "
            f"({', '.join(ring.key_ids)}) does not hold that key"
        )
    retired = {kid for rotation in history for kid in rotation.retired} - {last.key_id}
    if ring.current_key_id in retired:
        return (
            f"this ring's first key (id {ring.current_key_id}) is one the data was rotated "
            f"away from; key id {last.key_id} (rotated to {when}) or a new key must come first"
        )
    return None
