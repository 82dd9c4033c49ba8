"""Read-only views of a user for answers that print one: the row's columns, its policies and
its linked identities in one Core select (no ORM instance, no identity map, no eager
loading), which the bearer check extends with the caller's session.

On PostgreSQL the policies and identities come as JSON aggregates inside that select, so a
profile costs one round trip; other databases (the embedded SQLite) read them with two
more small selects.

On PostgreSQL a worker also keeps recently read views (ViewCache) under the row's
`profile_version`, which database triggers move on every change of what a view prints
(migration 3ad285f9be70): the bearer check then reads the revocation columns and that
version only, and the whole view again only when the version moved. A row not updated
since it was made has no number yet (0) and is read whole every time; the first update
(a sign-in counts one) numbers it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from functools import cache
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, bindparam, func, literal_column, select, type_coerce
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.types import JSON

from app.core import prepared
from app.core.db import db
from app.users.models import Identity, Policy, User, identity_dict, primary_identity

USER = User.__table__
POLICY = Policy.__table__
IDENTITY = Identity.__table__
POLICY_FIELDS = ("resource", "resource_type", "type")
IDENTITY_FIELDS = ("provider", "provider_user_id", "connection", "is_social", "profile_data")
# Never part of a view: what the answers print is whether there is one.
HIDDEN = frozenset({"password_hash"})
JSON_COLUMNS = ("custom_scopes", "settings", "user_metadata", "app_metadata")
JSON_KEYS = (*JSON_COLUMNS, "policies", "linked_identities")
# Views kept per worker, least recently used dropped first: a view costs a few KB (its
# columns, policies and identities), so this bounds the cache near 10 MB.
VIEW_CACHE_SIZE = 2048
# The profile_version of a row no trigger has numbered yet (see ViewCache.put).
UNNUMBERED = 0


class UserView:
    """A user's columns as attributes (as the output schemas read a `User`), with
    `policies` as dicts and `identities` as every surface prints them."""

    policies: list[dict[str, Any]]
    linked_identities: list[dict[str, Any]]

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    @property
    def identities(self) -> list[dict[str, Any]]:
        linked = [identity_dict(**identity) for identity in self.linked_identities]
        return [primary_identity(self.id, has_password=self.has_password), *linked]


def _owned_by_user(table: Any) -> ColumnElement[bool]:
    return (table.c.tenant_id == USER.c.tenant_id) & (table.c.user_id == USER.c.id)


def _json_list(table: Any, fields: tuple[str, ...]) -> Any:
    """The user's rows of `table` as a JSON array of objects, in id order ([] if none)."""
    row = func.json_build_object(
        *(part for name in fields for part in (literal_column(f"'{name}'"), table.c[name]))
    )
    aggregate = func.json_agg(aggregate_order_by(row, table.c.id))
    return (
        select(func.coalesce(aggregate, literal_column("'[]'::json")))
        .where(_owned_by_user(table))
        .scalar_subquery()
    )


def aggregates_in_select(dialect_name: str) -> bool:
    return dialect_name == "postgresql"


def view_columns(dialect_name: str) -> list[Any]:
    """The columns of a view: the user's (no password hash) and `has_password`; on
    PostgreSQL the JSON ones, the policies and the linked identities come as one JSON
    array (`json_values`, in JSON_KEYS order): one value for the driver to parse, not six."""
    aggregate = aggregates_in_select(dialect_name)
    columns: list[Any] = [
        column
        for column in USER.c
        if column.key not in HIDDEN and not (aggregate and column.key in JSON_COLUMNS)
    ]
    columns.append(USER.c.password_hash.is_not(None).label("has_password"))
    if aggregate:
        values = func.json_build_array(
            *(USER.c[key] for key in JSON_COLUMNS),
            _json_list(POLICY, POLICY_FIELDS),
            _json_list(IDENTITY, IDENTITY_FIELDS),
        )
        columns.append(type_coerce(values, JSON).label("json_values"))
    return columns


def user_where() -> ColumnElement[bool]:
    """The user named by the bind parameters `tenant_id` and `user_id` (the primary key)."""
    return (USER.c.tenant_id == bindparam("tenant_id")) & (USER.c.id == bindparam("user_id"))


@cache
def _view_select(dialect_name: str) -> Select[Any]:
    # Built once per process: the statement is the same every time, only values change.
    return select(*view_columns(dialect_name)).where(user_where())


def complete(values: dict[str, Any]) -> UserView:
    """A view from one row of a view select; where the database could not aggregate the
    policies and identities in that select, they are read now."""
    if "json_values" in values:
        values.update(zip(JSON_KEYS, values.pop("json_values"), strict=True))
    else:
        conn = db.session.connection()
        for key, table, fields in (
            ("policies", POLICY, POLICY_FIELDS),
            ("linked_identities", IDENTITY, IDENTITY_FIELDS),
        ):
            rows = conn.execute(
                select(*(table.c[name] for name in fields))
                .where(table.c.tenant_id == values["tenant_id"], table.c.user_id == values["id"])
                .order_by(table.c.id)
            )
            values[key] = [dict(row._mapping) for row in rows]
    return UserView(values)


def load_view(*, tenant_id: str, user_id: str) -> UserView | None:
    """The view of one user of the tenant, or None."""
    statement = _view_select(db.engine.dialect.name)
    values = prepared.fetch_one(statement, {"tenant_id": tenant_id, "user_id": user_id})
    return complete(values) if values is not None else None


def views_are_versioned(dialect_name: str) -> bool:
    """Whether the database moves `profile_version` on every change (the PostgreSQL
    triggers); the embedded SQLite has none, so nothing may be kept there."""
    return dialect_name == "postgresql"


class ViewCache:
    """Views of recently seen users by (tenant, user id), each as read at its
    `profile_version`; thread-safe, least recently used dropped first. A view is only
    ever replaced whole, never changed, so threads may share one."""

    def __init__(self, size: int = VIEW_CACHE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._views: OrderedDict[tuple[str, str], UserView] = OrderedDict()

    def get(self, tenant_id: str, user_id: str) -> UserView | None:
        key = (tenant_id, user_id)
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
        return view

    def put(self, view: UserView) -> None:
        """Keep `view`; one never numbered (version 0: a row not updated since it was
        made, which a user deleted and made again could share) drops the user's instead."""
        key = (view.tenant_id, view.id)
        with self._lock:
            if view.profile_version == UNNUMBERED:
                self._views.pop(key, None)
                return
            self._views[key] = view
            self._views.move_to_end(key)
            while len(self._views) > self.size:
                self._views.popitem(last=False)


def kept_views() -> ViewCache | None:
    """This worker's kept views, or None where versions do not move (SQLite)."""
    if not views_are_versioned(db.engine.dialect.name):
        return None
    views = current_app.extensions.get("gatehouse.views")
    if views is None:
        views = current_app.extensions.setdefault("gatehouse.views", ViewCache())
    return views
