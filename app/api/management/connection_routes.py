"""Routes of the management surface for connections (Auth0's Connections API): the tenant's
upstream identity providers, created, listed, read, changed and deleted, and its database
connection, listed first and readable but not changed or deleted. A client secret goes in
and is never answered."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal, requires
from app.api.management import blp
from app.api.management.connection_schemas import (
    CONNECTION_FIELDS,
    ConnectionPageSchema,
    ConnectionQuerySchema,
    ConnectionSchema,
    CreateConnectionSchema,
    ListConnectionsQuerySchema,
    UpdateConnectionSchema,
)
from app.api.management.query import field_selection
from app.api.management.routes import answer
from app.applications import service as application_service
from app.connections import service as connection_service
from app.connections.models import Connection
from app.core.smorest import Dumped

CONNECTIONS_ANSWER = {"oneOf": [ConnectionPageSchema, {"type": "array", "items": ConnectionSchema}]}


def _view(connection: Connection) -> dict[str, Any]:
    """The connection as Auth0 shows it (the options never hold the client secret)."""
    return {
        "id": connection.id,
        "name": connection.name,
        "display_name": connection.display_name,
        "strategy": connection.strategy,
        "options": connection.options,
        "enabled_clients": connection.enabled_clients,
        "realms": [connection.name],
        "is_domain_connection": False,
    }


def _known_clients() -> set[str]:
    tenant_id = current_principal().tenant_id
    return {app.id for app in application_service.list_applications(tenant_id=tenant_id)}


def _strategies(values: list[str] | None) -> set[str] | None:
    if not values:
        return None
    return {part.strip() for value in values for part in value.split(",") if part.strip()}


def _page_only(selection: dict[str, Any], extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """`only` for a page: its own keys, and the selected properties of each connection."""
    names = selection.get("only")
    if names is None:
        names = sorted(CONNECTION_FIELDS - set(selection.get("exclude", ())))
    return (*extra, *(f"connections.{name}" for name in names))


def _from(found: list[Connection], start_id: str | None) -> list[Connection]:
    """Checkpoint paging: the connections from the one with id `start_id` on (none for an
    id not in the list)."""
    if not start_id:
        return found
    ids = [connection.id for connection in found]
    return found[ids.index(start_id) :] if start_id in ids else []


@blp.route("/api/v2/connections", methods=["GET"])
@requires("read:connections", user_arg=None)
@blp.arguments(ListConnectionsQuerySchema, location="query")
@blp.errors(400)
@blp.response(200, CONNECTIONS_ANSWER)
def list_connections(query: dict[str, Any]) -> Dumped:
    """List the tenant's connections, the database connection first, filtered by strategy
    and name. A bare array; `{start, limit, length, total, connections}` with
    include_totals; `{connections, next}` with checkpoint paging (`from`, `take`)"""
    found = connection_service.list_connections(
        strategies=_strategies(query.get("strategy")), name=query.get("name")
    )
    selection = field_selection(query.get("fields"), query["include_fields"], CONNECTION_FIELDS)
    if "from_" in query or "take" in query:
        rest = _from(found, query.get("from_"))
        take = query.get("take", 50)
        page: dict[str, Any] = {"connections": [_view(c) for c in rest[:take]]}
        extra: tuple[str, ...] = ()
        if len(rest) > take:
            page["next"], extra = rest[take].id, ("next",)
        return answer(ConnectionPageSchema(only=_page_only(selection, extra)), page)
    per_page = query.get("per_page", 50)
    start = query.get("page", 0) * per_page
    views = [_view(c) for c in found[start : start + per_page]]
    if query["include_totals"]:
        totals = {"start": start, "limit": per_page, "length": len(views), "total": len(found)}
        only = _page_only(selection, ("start", "limit", "length", "total"))
        return answer(ConnectionPageSchema(only=only), {**totals, "connections": views})
    return answer(ConnectionSchema(many=True, **selection), views)


@blp.route("/api/v2/connections", methods=["POST"])
@requires("create:connections", user_arg=None)
@blp.arguments(CreateConnectionSchema)
@blp.errors(400, 409)
@blp.response(201, ConnectionSchema)
def create_connection(body: dict[str, Any]) -> dict[str, Any]:
    """Create a connection to another identity provider (strategy oidc, google-oauth2,
    windowslive, apple, oauth2 or github); its client secret is stored encrypted and never
    answered"""
    body.pop("is_domain_connection", None)
    connection = connection_service.create_connection(
        known_clients=_known_clients(), actor=current_principal(), **body
    )
    return _view(connection)


@blp.route("/api/v2/connections/<connection_id>", methods=["GET"])
@requires("read:connections", user_arg=None)
@blp.arguments(ConnectionQuerySchema, location="query")
@blp.errors(400, 404)
@blp.response(200, ConnectionSchema)
def get_connection(query: dict[str, Any], connection_id: str) -> Dumped:
    """Get a connection"""
    connection = connection_service.get_connection(connection_id)
    selection = field_selection(query.get("fields"), query["include_fields"], CONNECTION_FIELDS)
    return answer(ConnectionSchema(**selection), _view(connection))


@blp.route("/api/v2/connections/<connection_id>", methods=["PATCH"])
@requires("update:connections", user_arg=None)
@blp.arguments(UpdateConnectionSchema)
@blp.errors(400, 404)
@blp.response(200, ConnectionSchema)
def update_connection(body: dict[str, Any], connection_id: str) -> dict[str, Any]:
    """Change a connection's display_name, enabled_clients or options (replaced as a
    whole; the stored client secret stays unless the options carry a new one). The
    database connection cannot be changed: 400 operation_not_supported"""
    body.pop("is_domain_connection", None)
    connection = connection_service.update_connection(
        connection_id, fields=body, known_clients=_known_clients(), actor=current_principal()
    )
    return _view(connection)


@blp.route("/api/v2/connections/<connection_id>", methods=["DELETE"])
@requires("delete:connections", user_arg=None)
@blp.errors(400, 404)
@blp.response(204)
def delete_connection(connection_id: str) -> None:
    """Delete a connection. The database connection cannot be deleted: 400
    operation_not_supported"""
    connection_service.delete_connection(connection_id, actor=current_principal())
