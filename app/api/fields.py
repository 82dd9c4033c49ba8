"""Marshmallow fields and bases shared by the surfaces' schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import marshmallow as ma

from app.core.scopes import unknown_scope_message
from app.core.security import sha256_hex

USER_ID_REGEX = r"^[A-Za-z0-9._@|:-]{1,128}\Z"


def entity_tag(row: Any) -> str:
    """A digest that changes whenever a versioned row changes (ETag, `_meta.update_hash`)."""
    return sha256_hex(f"{row.tenant_id}:{row.id}:{row.version}")


class IsoDateTime(ma.fields.Field):
    """ISO 8601 UTC with milliseconds: `2026-01-02T03:04:05.678Z`."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kw: Any) -> Any:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HttpDateTime(ma.fields.Field):
    """RFC 7231 date (`Tue, 02 Jan 2026 03:04:05 GMT`), as the accounts platform prints."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kw: Any) -> Any:
        if value is None:
            return None
        return format_datetime(value.astimezone(UTC), usegmt=True)


class StrictBoolean(ma.fields.Boolean):
    """Only JSON true/false: "yes", 1 and friends are the wrong type."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(truthy={True}, falsy={False}, **kwargs)


class StrictSchema(ma.Schema):
    """Input schema: unknown fields are an error, so typos never pass silently."""

    class Meta:
        unknown = ma.RAISE


class OutputSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE
        ordered = True


class ScopeName(ma.validate.OneOf):
    """One scope of `choices` (the OpenAPI enum); the error for any other names the
    closest of them."""

    def __init__(self, choices: tuple[str, ...]) -> None:
        super().__init__(choices)

    def _format_error(self, value: Any) -> str:
        return unknown_scope_message(str(value), self.choices)


def at_most(count: int) -> Any:
    """A webargs validator for a list body: at most `count` items."""

    def validate(items: list[Any]) -> None:
        if len(items) > count:
            raise ma.ValidationError(f"At most {count} items.")

    return validate


class ListQuerySchema(StrictSchema):
    limit = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=1, max=100))
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Length(max=512))
