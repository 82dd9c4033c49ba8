"""Properties of a user: named JSON values (at most 16 KiB each) with CRUD and paging."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from app.core import security
from app.core.db import add_unique, db, utcnow
from app.core.errors import Conflict, NotFound, PayloadTooLarge
from app.core.pagination import Page, paginate_by_creation
from app.properties.models import Property
from app.users import service as user_service

MAX_VALUE_BYTES = 16 * 1024


def _check_size(value: Any) -> None:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise PayloadTooLarge(
            f"A property value is at most {MAX_VALUE_BYTES} bytes of JSON",
            code="property_too_large",
        )


def _flush_named(prop: Property) -> None:
    add_unique(
        prop, Conflict("This user already has a property with this name", code="property_exists")
    )


def create_property(*, user_id: str, name: str, value: Any) -> Property:
    """Store a new property; NotFound, Conflict on a taken name, PayloadTooLarge."""
    user = user_service.get_user(user_id)
    _check_size(value)
    now = utcnow()
    prop = Property(
        id=security.random_hex(16),
        tenant_id=user.tenant_id,
        user_id=user_id,
        name=name,
        value=value,
        version=1,
        created_at=now,
        updated_at=now,
    )
    _flush_named(prop)
    return prop


def list_properties(*, user_id: str, limit: int | None, cursor: str | None) -> Page[Property]:
    """A page of the user's properties, oldest first; NotFound."""
    user_service.get_user(user_id)
    return paginate_by_creation(
        select(Property).where(Property.user_id == user_id),
        created_col=Property.created_at,
        id_col=Property.id,
        limit=limit,
        cursor=cursor,
    )


def count_properties(*, user_id: str) -> int:
    """How many properties the user holds (in the tenant in scope)."""
    query = select(func.count()).select_from(Property).where(Property.user_id == user_id)
    return db.session.scalar(query) or 0


def get_property(*, user_id: str, property_id: str) -> Property:
    """The property; NotFound for an unknown user or property, or another user's."""
    prop = db.session.scalar(
        select(Property).where(Property.id == property_id, Property.user_id == user_id)
    )
    if prop is None:
        raise NotFound("Property not found", code="property_not_found")
    return prop


def update_property(*, prop: Property, changes: dict[str, Any]) -> Property:
    """Replace the value and/or the name of a property (from get_property); Conflict,
    PayloadTooLarge."""
    if "value" in changes:
        _check_size(changes["value"])
        prop.value = changes["value"]
    if "name" in changes:
        prop.name = changes["name"]
    _flush_named(prop)
    return prop


def delete_property(*, user_id: str, property_id: str) -> None:
    """Delete one property; NotFound."""
    db.session.delete(get_property(user_id=user_id, property_id=property_id))
    db.session.flush()
