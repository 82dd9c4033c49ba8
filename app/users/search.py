"""User search: a typed filter (exact or prefix terms on email, username, name and id, all
of which must match), a sort, and numbered pages with a total."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from app.core.pagination import OffsetPage, paginate_by_offset
from app.users.models import User

SEARCH_FIELDS = ("email", "username", "name", "user_id")
SORT_FIELDS = {
    "created_at": User.created_at,
    "updated_at": User.updated_at,
    "last_login": User.last_login_at,
    "logins_count": User.logins_count,
    "email": User.email_normalized,
    "username": User.username_normalized,
    "name": User.display_name,
    "nickname": User.nickname,
    "user_id": User.id,
}


@dataclass(frozen=True)
class Term:
    """`field` equals `value` (case-insensitive except the id), or starts with it when
    `prefix`; no field means any of SEARCH_FIELDS."""

    value: str
    field: str | None = None
    prefix: bool = False

    def __post_init__(self) -> None:
        if self.field is not None and self.field not in SEARCH_FIELDS:
            raise ValueError(f"unsearchable field {self.field!r}")


@dataclass(frozen=True)
class UserQuery:
    """Terms that must all match (an empty query matches every user)."""

    terms: tuple[Term, ...] = ()


@dataclass(frozen=True)
class Sort:
    field: str = "created_at"
    descending: bool = False

    def __post_init__(self) -> None:
        if self.field not in SORT_FIELDS:
            raise ValueError(f"unsortable field {self.field!r}")


@dataclass(frozen=True)
class SearchPage:
    page: int = 0
    per_page: int = 50
    with_total: bool = False
    sort: Sort = field(default_factory=Sort)


def _like_prefix(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def _match(column: Any, value: str, prefix: bool) -> ColumnElement[bool]:
    if prefix:
        return column.like(_like_prefix(value), escape="\\")
    return column == value


def _field_condition(name: str, value: str, prefix: bool) -> ColumnElement[bool]:
    folded = value.casefold()
    if name == "email":
        return _match(User.email_normalized, folded, prefix)
    if name == "username":
        return _match(User.username_normalized, folded, prefix)
    if name == "name":
        return _match(func.lower(User.display_name), value.lower(), prefix)
    return _match(User.id, value, prefix)


def _condition(term: Term) -> ColumnElement[bool]:
    if term.field is not None:
        return _field_condition(term.field, term.value, term.prefix)
    return or_(*(_field_condition(name, term.value, term.prefix) for name in SEARCH_FIELDS))


def search_users(*, query: UserQuery, paging: SearchPage) -> OffsetPage[User]:
    """A numbered page of the current tenant's users matching `query`, in `paging.sort`
    order (ties broken by id); Invalid for a page size outside 1..100."""
    statement = select(User)
    if query.terms:
        statement = statement.where(and_(*(_condition(term) for term in query.terms)))
    column = SORT_FIELDS[paging.sort.field]
    if paging.sort.descending:
        order = (column.desc().nulls_last(), User.id.desc())
    else:
        order = (column.asc().nulls_last(), User.id.asc())
    return paginate_by_offset(
        statement,
        order_by=order,
        page=paging.page,
        per_page=paging.per_page,
        with_total=paging.with_total,
    )
