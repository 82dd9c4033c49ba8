"""Pagination: keyset (opaque cursors carrying the last row's sort key) and numbered pages
with a total, for clients that page by number (Auth0's `page`/`per_page`)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, or_
from sqlalchemy import inspect as sa_inspect

from app.core.db import db
from app.core.errors import Invalid
from app.core.inputs import loads_strict

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 100


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None) -> list[Any] | None:
    """The sort key inside `cursor`, or None for the first page; Invalid when malformed."""
    if not cursor:
        return None
    try:
        key = loads_strict(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise Invalid("The cursor is not valid", code="invalid_cursor") from exc
    if not isinstance(key, list):
        raise Invalid("The cursor is not valid", code="invalid_cursor")
    return key


def check_limit(limit: int | None, *, most: int = MAX_LIMIT) -> int:
    """The page size to use; Invalid outside 1..`most` (MAX_LIMIT unless an export's)."""
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= most:
        raise Invalid(f"limit must be between 1 and {most}", code="invalid_limit")
    return limit


def page_from_rows(rows: list[T], limit: int, key_of: Any) -> Page[T]:
    """Build a Page from `limit + 1` fetched rows: the extra row only says a next page exists."""
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, encode_cursor(key_of(rows[-1])))
    return Page(rows, None)


def after_creation_cursor(
    cursor: str | None, *, created_col: Any, id_col: Any, newest_first: bool = False
) -> ColumnElement[bool] | None:
    """The rows after a (created_at, id) keyset cursor, or None without one; Invalid
    `invalid_cursor` for one we did not issue."""
    key = decode_cursor(cursor)
    if key is None:
        return None
    try:
        at, last_id = datetime.fromisoformat(key[0]), key[1]
    except (IndexError, TypeError, ValueError) as exc:
        raise Invalid("The cursor is not valid", code="invalid_cursor") from exc
    # The cursors we issue hold an aware time and a string id; anything else was forged.
    if at.tzinfo is None or not isinstance(last_id, str):
        raise Invalid("The cursor is not valid", code="invalid_cursor")
    if newest_first:
        return or_(created_col < at, and_(created_col == at, id_col < last_id))
    return or_(created_col > at, and_(created_col == at, id_col > last_id))


def paginate_by_creation(
    query: Select[Any],
    *,
    created_col: Any,
    id_col: Any,
    limit: int | None,
    cursor: str | None,
    newest_first: bool = False,
    most: int = MAX_LIMIT,
) -> Page[Any]:
    """Keyset paging on (created_at, id): a page costs the same however deep it is; a page
    holds at most `most` rows (an export's may hold more than a page of a list)."""
    size = check_limit(limit, most=most)
    after = after_creation_cursor(
        cursor, created_col=created_col, id_col=id_col, newest_first=newest_first
    )
    if after is not None:
        query = query.where(after)
    order = (created_col.desc(), id_col.desc()) if newest_first else (created_col, id_col)
    rows = list(db.session.scalars(query.order_by(*order).limit(size + 1)))
    return page_from_rows(
        rows, size, lambda row: [row.created_at.isoformat(), str(getattr(row, id_col.key))]
    )


@dataclass
class OffsetPage(Generic[T]):
    """A numbered page (Auth0-style `page`/`per_page`), with the total when asked for."""

    items: list[T]
    start: int
    limit: int
    total: int | None


def paginate_by_offset(
    query: Select[Any],
    *,
    order_by: tuple[Any, ...],
    page: int,
    per_page: int,
    with_total: bool,
) -> OffsetPage[Any]:
    """Offset paging for clients that number their pages; `query` must already hold its
    filters (the total counts the same rows). A page past the end is empty, not an error.
    Invalid outside per_page 1..MAX_LIMIT or a negative page."""
    if not 1 <= per_page <= MAX_LIMIT:
        raise Invalid(f"per_page must be between 1 and {MAX_LIMIT}", code="invalid_limit")
    if page < 0:
        raise Invalid("page must be 0 or more", code="invalid_page")
    start = page * per_page
    rows = list(db.session.scalars(query.order_by(*order_by).offset(start).limit(per_page)))
    total = None
    if with_total:
        # Count an ORM attribute of the entity, not `count(*)`: a statement without one
        # names no mapper, and the tenancy filter (core.tenancy) would not see its rows.
        entity = query.column_descriptions[0]["entity"]
        key = getattr(entity, sa_inspect(entity).primary_key[-1].key)
        counted = query.order_by(None).with_only_columns(func.count(key))
        total = int(db.session.scalar(counted) or 0)
    return OffsetPage(rows, start, per_page, total)
