"""A tenant's connections: create, list, get, update and delete its upstream providers, and
the one database connection (`Username-Password-Authentication`) every tenant has, which is
listed and read like them but not stored, changed or deleted. Call these in the tenant's
scope (the edge opens it)."""

from __future__ import annotations

import re
import string
from collections.abc import Collection
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.audit import service as audit_service
from app.connections import secrets
from app.connections.models import STRATEGIES, Connection
from app.connections.options import checked_options, invalid
from app.core import security
from app.core.db import add_unique, db
from app.core.errors import Conflict, Invalid, NotFound
from app.core.tenancy import Principal, current_tenant_id

DATABASE_CONNECTION = "Username-Password-Authentication"
DATABASE_STRATEGY = "auth0"
NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ID_ALPHABET = string.ascii_letters + string.digits


def database_connection_id(tenant_id: str | None = None) -> str:
    """The id of the tenant's database connection as Auth0's SDK sees it: `con_` and 16
    characters, the same on every call."""
    return f"con_{security.sha256_hex(tenant_id or current_tenant_id())[:16]}"


def database_connection() -> Connection:
    """The tenant's password database as a connection (never added to the session)."""
    return Connection(
        id=database_connection_id(),
        tenant_id=current_tenant_id(),
        name=DATABASE_CONNECTION,
        display_name=DATABASE_CONNECTION,
        strategy=DATABASE_STRATEGY,
        options={"import_mode": False, "requires_username": False},
        enabled_clients=[],
    )


def _new_id() -> str:
    # Auth0's shape, `con_` and 16 letters or digits, which the SDKs' patterns expect.
    return "con_" + "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in _random_bytes(16))


def _random_bytes(count: int) -> bytes:
    # Rejection-free is fine here: an id needs to be unique, not uniform.
    return bytes.fromhex(security.random_hex(count))


def _allow_http() -> bool:
    return bool(current_app.config["FEDERATION_ALLOW_HTTP"])


def _allow_private() -> bool:
    return bool(current_app.config["FEDERATION_ALLOW_PRIVATE_TARGETS"])


def _checked_clients(clients: list[str], known_clients: Collection[str]) -> list[str]:
    unknown = [client for client in clients if client not in known_clients]
    if unknown:
        raise invalid("enabled_clients", f"{unknown[0]!r} is not an application of the tenant")
    return list(dict.fromkeys(clients))


def create_connection(
    *,
    name: str,
    strategy: str,
    options: dict[str, Any],
    display_name: str | None = None,
    enabled_clients: list[str] | None = None,
    known_clients: Collection[str] = (),
    actor: Principal | None = None,
) -> Connection:
    """Create a connection of the current tenant (audited `connection.created`).
    `known_clients`: the tenant's application ids, which `enabled_clients` must be among.
    Invalid for a bad name, strategy, option or client; Conflict when the name is taken."""
    if not NAME.fullmatch(name) or name == DATABASE_CONNECTION:
        raise invalid("name", "must be 1-128 letters, digits, '-' or '_', and not reserved")
    if strategy not in STRATEGIES:
        raise invalid("strategy", f"must be one of {', '.join(STRATEGIES)}")
    stored, secret = checked_options(
        strategy,
        options,
        has_secret=False,
        allow_http=_allow_http(),
        allow_private=_allow_private(),
    )
    connection = Connection(
        id=_new_id(),
        tenant_id=current_tenant_id(),
        name=name,
        strategy=strategy,
        display_name=display_name,
        options=stored,
        enabled_clients=_checked_clients(enabled_clients or [], known_clients),
    )
    secrets.set_client_secret(connection, secret)
    add_unique(
        connection,
        Conflict("A connection with this name already exists", code="connection_exists"),
    )
    _audit("connection.created", connection, actor)
    return connection


def list_connections(
    *, strategies: Collection[str] | None = None, name: str | None = None
) -> list[Connection]:
    """The tenant's connections, the database connection first, then the others oldest
    first; only those of `strategies` and named `name` when given."""
    query = select(Connection).order_by(Connection.created_at, Connection.id)
    if strategies is not None:
        query = query.where(Connection.strategy.in_(list(strategies)))
    if name is not None:
        query = query.where(Connection.name == name)
    found = list(db.session.scalars(query))
    if (strategies is None or DATABASE_STRATEGY in strategies) and name in (
        None,
        DATABASE_CONNECTION,
    ):
        found.insert(0, database_connection())
    return found


def get_connection(connection_id: str) -> Connection:
    """The tenant's connection `connection_id` (the database connection too); NotFound
    for another tenant's or an unknown id."""
    if connection_id == database_connection_id():
        return database_connection()
    connection = db.session.get(Connection, connection_id)
    if connection is None:
        raise NotFound("The connection does not exist", code="connection_not_found")
    return connection


def _stored(connection_id: str) -> Connection:
    if connection_id == database_connection_id():
        raise Invalid(
            "The database connection cannot be changed or deleted here",
            code="database_connection_readonly",
        )
    return get_connection(connection_id)


def update_connection(
    connection_id: str,
    *,
    fields: dict[str, Any],
    known_clients: Collection[str] = (),
    actor: Principal | None = None,
) -> Connection:
    """Change `display_name`, `enabled_clients` and `options` (replaced as a whole, as
    Auth0 does; the stored client secret stays unless the new options carry one); audited
    `connection.updated` with the fields named. NotFound for an unknown id; Invalid for the
    database connection or a bad value."""
    connection = _stored(connection_id)
    if "options" in fields:
        stored, secret = checked_options(
            connection.strategy,
            fields["options"],
            has_secret=connection.client_secret_encrypted is not None,
            allow_http=_allow_http(),
            allow_private=_allow_private(),
        )
        connection.options = stored
        if secret:
            secrets.set_client_secret(connection, secret)
    if "enabled_clients" in fields:
        connection.enabled_clients = _checked_clients(fields["enabled_clients"], known_clients)
    if "display_name" in fields:
        connection.display_name = fields["display_name"]
    db.session.flush()
    _audit("connection.updated", connection, actor, changed=sorted(fields))
    return connection


def delete_connection(connection_id: str, *, actor: Principal | None = None) -> None:
    """Delete a connection (audited `connection.deleted`). NotFound for an unknown id;
    Invalid for the database connection, which every tenant keeps."""
    connection = _stored(connection_id)
    _audit("connection.deleted", connection, actor)
    db.session.delete(connection)
    db.session.flush()


def _audit(action: str, connection: Connection, actor: Principal | None, **data: Any) -> None:
    audit_service.record(
        action=action,
        actor=actor.label if actor else "system",
        target=connection.id,
        ip=actor.ip if actor else None,
        data={"name": connection.name, "strategy": connection.strategy, **data},
    )
