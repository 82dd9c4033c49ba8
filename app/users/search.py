"""User search: a typed filter (exact or prefix terms on email, username, name and id, all
of which must match), parsed from Auth0's `q` syntax (parse_q), then either numbered pages
with a sort and a total (the Management API's) or keyset pages newest first (the
console's). Prefix terms use the `*_prefix` pattern indexes of user_account."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, bindparam, func, or_, select
from sqlalchemy.orm import aliased

from app.core.db import db
from app.core.errors import Invalid
from app.core.pagination import (
    OffsetPage,
    Page,
    after_creation_cursor,
    paginate_by_creation,
    paginate_by_offset,
)
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
        # The pattern is written into the SQL, not bound: a prepared statement's generic
        # plan cannot use the prefix indexes for `LIKE $1` (its pattern is unknown), and
        # psycopg prepares a statement after a few runs; then every search scans the table.
        pattern = bindparam(None, _like_prefix(value), type_=String, literal_execute=True)
        return column.like(pattern, escape="\\")
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


def _filtered(query: UserQuery) -> Select[tuple[User]]:
    statement = select(User)
    if query.terms:
        statement = statement.where(and_(*(_condition(term) for term in query.terms)))
    return statement


def search_users(*, query: UserQuery, paging: SearchPage) -> OffsetPage[User]:
    """A numbered page of the current tenant's users matching `query`, in `paging.sort`
    order (ties broken by id); Invalid for a page size outside 1..100."""
    statement = _filtered(query)
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


# A search walks the (created_at, id) index newest first, looking at the newest WINDOW users
# after the cursor only: a page of matches found there is the page. Matches that are few,
# or all older than that (a broad prefix of the oldest addresses), are then collected
# through the search indexes and sorted, instead of a walk through a million rows.
WINDOW = 2_000


def search_newest(*, query: UserQuery, limit: int | None, cursor: str | None) -> Page[User]:
    """The current tenant's users matching `query`, newest first, keyset paged on
    (created_at, id): a page costs the same however deep it is, and nothing is counted.
    Invalid `invalid_cursor`, `invalid_limit`."""
    statement = _filtered(query)

    def newest(rows: Select[Any], entity: Any = User) -> Page[User]:
        return paginate_by_creation(
            rows,
            created_col=entity.created_at,
            id_col=entity.id,
            limit=limit,
            cursor=cursor,
            newest_first=True,
        )

    if not query.terms or db.session.get_bind().dialect.name != "postgresql":
        return newest(statement)
    after = after_creation_cursor(
        cursor, created_col=User.created_at, id_col=User.id, newest_first=True
    )
    recent = select(User.id).order_by(User.created_at.desc(), User.id.desc()).limit(WINDOW)
    if after is not None:
        recent = recent.where(after)
    # Looked up by primary key, the newest WINDOW users (after the cursor) are a prefix of
    # the order: their first page of matches, when they hold one, is the first page of all.
    found = newest(statement.where(User.id.in_(recent.scalar_subquery())))
    if found.next_cursor is not None:
        return found
    # MATERIALIZED: left to itself the planner may walk the creation index again.
    matches = aliased(User, statement.cte("matches").prefix_with("MATERIALIZED"))
    return newest(select(matches), matches)


# --- Auth0's `q`, parsed -----------------------------------------------------------------

MAX_TERMS = 10
_TERM = re.compile(
    r"""\s*(?:(?P<field>[A-Za-z_][A-Za-z0-9_.]*):)?"""
    r"""(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"()]+))"""
)
_RESERVED = frozenset({"OR", "NOT", "||", "&&", "TO"})


def _invalid(message: str) -> Invalid:
    return Invalid(message, code="invalid_query", fields={"q": [message]})


def parse_q(q: str | None, *, bare_prefix: bool = False) -> UserQuery:
    """The terms of `q`; Invalid (`invalid_query`) for syntax outside the subset.

    `q`: terms separated by spaces (or `AND`), all of which must match; a term is
    `field:value`, `field:"quoted value"` or a bare value (matching email, username, name
    or user_id); a value ending in `*` matches as a prefix. Fields: email, username, name,
    user_id. Anything else (OR, NOT, ranges, other fields) is refused. With `bare_prefix`
    (the console's search box) every unquoted value matches as a prefix, `*` or not."""
    if q is None or not q.strip():
        return UserQuery()
    terms: list[Term] = []
    position = 0
    while position < len(q):
        if not q[position:].strip():
            break
        match = _TERM.match(q, position)
        if match is None:
            raise _invalid(f"Cannot parse the query near {q[position : position + 20]!r}")
        position = match.end()
        if position < len(q) and not q[position].isspace():
            raise _invalid(f"Cannot parse the query near {q[match.start() : position + 1]!r}")
        field, quoted, bare = match.group("field"), match.group("quoted"), match.group("bare")
        if field is None and bare == "AND":
            continue
        if field is None and bare in _RESERVED:
            raise _invalid(f"{bare} is not supported: every term must match")
        if field is not None and field not in SEARCH_FIELDS:
            raise _invalid(f"Cannot search on {field!r}; use {', '.join(SEARCH_FIELDS)}")
        if quoted is not None:
            value, prefix = re.sub(r"\\(.)", r"\1", quoted), False
        else:
            value, prefix = bare.removesuffix("*"), bare.endswith("*") or bare_prefix
            if "*" in value or "?" in value:
                raise _invalid("Wildcards are supported only at the end of a value")
        if not value:
            raise _invalid("Empty value in the query")
        terms.append(Term(value=value, field=field, prefix=prefix))
        if len(terms) > MAX_TERMS:
            raise _invalid(f"At most {MAX_TERMS} terms")
    return UserQuery(terms=tuple(terms))
