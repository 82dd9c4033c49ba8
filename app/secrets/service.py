"""Secrets of a user: create, list (never values), read metadata, read the value
(audited by the worker), update, delete. Key rotation is app/encryption.py's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.audit import tasks as audit_tasks
from app.core import security
from app.core.db import add_unique, db, utcnow
from app.core.errors import Conflict, Invalid, NotFound, PayloadTooLarge
from app.core.jobs import enqueue_after_commit
from app.core.pagination import Page, paginate_by_creation
from app.core.tenancy import Principal
from app.secrets.models import Secret
from app.users import service as user_service

MAX_VALUE_BYTES = 64 * 1024


def associated_data(secret: Secret) -> bytes:
    # Binds a ciphertext to its row: a value copied into another row does not decrypt.
    return f"secret:{secret.tenant_id}:{secret.id}".encode()


def _encrypt(secret: Secret, value: str) -> None:
    raw = value.encode("utf-8")
    if len(raw) > MAX_VALUE_BYTES:
        raise PayloadTooLarge(
            f"A secret value is at most {MAX_VALUE_BYTES} bytes", code="secret_too_large"
        )
    secret.value_encrypted = security.keyring().encrypt(raw, associated_data(secret))


def _flush_named(secret: Secret) -> None:
    add_unique(
        secret, Conflict("This user already has a secret with this name", code="secret_exists")
    )


def create_secret(*, user_id: str, name: str, value: str) -> Secret:
    """Store a new secret for a user; NotFound, Conflict on a taken name, PayloadTooLarge."""
    user = user_service.get_user(user_id)
    secret = Secret(
        id=security.random_hex(16), tenant_id=user.tenant_id, user_id=user_id, name=name, version=1
    )
    now = utcnow()
    secret.created_at, secret.updated_at = now, now
    _encrypt(secret, value)
    _flush_named(secret)
    return secret


def list_secrets(*, user_id: str, limit: int | None, cursor: str | None) -> Page[Secret]:
    """A page of the user's secrets (metadata only), oldest first; NotFound."""
    user_service.get_user(user_id)
    return paginate_by_creation(
        select(Secret).where(Secret.user_id == user_id),
        created_col=Secret.created_at,
        id_col=Secret.id,
        limit=limit,
        cursor=cursor,
    )


def count_secrets(*, user_id: str) -> int:
    """How many secrets the user holds (in the tenant in scope)."""
    query = select(func.count()).select_from(Secret).where(Secret.user_id == user_id)
    return db.session.scalar(query) or 0


def get_secret(*, user_id: str, secret_id: str) -> Secret:
    """The secret's row; NotFound for an unknown user or secret, or another user's secret."""
    secret = db.session.scalar(
        select(Secret).where(Secret.id == secret_id, Secret.user_id == user_id)
    )
    if secret is None:
        raise NotFound("Secret not found", code="secret_not_found")
    return secret


def read_value(*, actor: Principal, user_id: str, secret_id: str) -> str:
    """The decrypted value; the read is audited (actor, secret, ip) by the worker."""
    secret = get_secret(user_id=user_id, secret_id=secret_id)
    value = security.keyring().decrypt(secret.value_encrypted, associated_data(secret))
    enqueue_after_commit(
        audit_tasks.record_event,
        secret.tenant_id,
        {
            "action": "secret.value_read",
            "actor": actor.label,
            "user_id": user_id,
            "target": secret.id,
            "ip": actor.ip,
            "data": {"name": secret.name},
            "at": utcnow().isoformat(),
        },
    )
    return value.decode("utf-8")


def update_secret(*, secret: Secret, changes: dict[str, Any]) -> Secret:
    """Rename a secret (from get_secret) and/or replace its value; Invalid, Conflict,
    PayloadTooLarge."""
    if not changes.keys() & {"name", "value"}:
        raise Invalid("Give name or value", code="validation_failed")
    if "name" in changes:
        secret.name = changes["name"]
    if "value" in changes:
        _encrypt(secret, changes["value"])
    _flush_named(secret)
    return secret


def delete_secret(*, user_id: str, secret_id: str) -> None:
    """Delete one secret; NotFound."""
    db.session.delete(get_secret(user_id=user_id, secret_id=secret_id))
    db.session.flush()
