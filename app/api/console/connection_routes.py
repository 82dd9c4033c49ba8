"""The console's Connections page: the tenant's upstream identity providers (OIDC, OAuth2,
and the presets /api/v2/connections accepts) and its database connection (shown, never
changed). An admin adds one, changes its options and applications, and deletes one after
a confirmation. A client secret goes in and is never shown again: left blank on the edit
form, the stored one stays. The same service calls as /api/v2/connections."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, redirect, request, url_for

from app.api.auth import public
from app.api.console import blp, page, show_form_on_error
from app.api.console.admin_forms import FormSchema, posted, read_form, split_lines
from app.api.console.edge import console_tenant, console_view, current
from app.applications import service as application_service
from app.connections import service as connection_service
from app.connections.models import STRATEGIES, Connection
from app.core.http import accepts_form

NOTICES = {
    "created": "The connection was added.",
    "saved": "The connection was saved.",
    "deleted": "The connection was deleted.",
}
STRATEGY_LABELS = {
    "oidc": "OpenID Connect (any provider)",
    "oauth2": "OAuth 2 (endpoints and a profile mapping)",
    "github": "GitHub",
    "google-oauth2": "Google",
    "windowslive": "Microsoft",
    "apple": "Apple",
}
# The options the form offers; each strategy takes some (connections.options says which
# and refuses the others, next to their fields).
OPTION_KEYS = (
    "client_id",
    "client_secret",
    "discovery_url",
    "issuer",
    "scopes",
    "authorizationURL",
    "tokenURL",
    "userinfoURL",
    "scope",
    "profile_map",
)
MULTI = ("enabled_clients",)
_url = ma.validate.Length(max=2048)


class ProfileMapText(ma.fields.Field):
    """`ours = theirs`, one per line, as the dict the oauth2 strategy's profile_map is."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict[str, str]:
        mapped = {}
        for line in split_lines(str(value)):
            ours, sep, theirs = line.partition("=")
            if not sep or not ours.strip() or not theirs.strip():
                raise ma.ValidationError(f"{line!r}: write one `field = upstream.field` a line.")
            mapped[ours.strip()] = theirs.strip()
        return mapped


def _option(validate: ma.validate.Validator, key: str) -> ma.fields.String:
    return ma.fields.String(data_key=f"options.{key}", validate=validate, load_default="")


class ConnectionForm(FormSchema):
    display_name = ma.fields.String(validate=ma.validate.Length(max=255), load_default="")
    enabled_clients = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=64)), load_default=list
    )
    client_id = _option(ma.validate.Length(max=256), "client_id")
    client_secret = _option(ma.validate.Length(max=4096), "client_secret")
    discovery_url = _option(_url, "discovery_url")
    issuer = _option(_url, "issuer")
    scopes = _option(ma.validate.Length(max=1024), "scopes")
    authorizationURL = _option(_url, "authorizationURL")  # noqa: N815 - Auth0's own name
    tokenURL = _option(_url, "tokenURL")  # noqa: N815
    userinfoURL = _option(_url, "userinfoURL")  # noqa: N815
    scope = _option(ma.validate.Length(max=1024), "scope")
    profile_map = ProfileMapText(data_key="options.profile_map", load_default=dict)


class NewConnectionForm(ConnectionForm):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    strategy = ma.fields.String(required=True, validate=ma.validate.OneOf(STRATEGIES))


def _fields(form: dict[str, Any]) -> dict[str, Any]:
    """The service's fields from the form: the options filled in (blank ones left out)."""
    return {
        "display_name": form["display_name"].strip() or None,
        "enabled_clients": form["enabled_clients"],
        "options": {key: form[key] for key in OPTION_KEYS if form.get(key)},
    }


def _applications() -> list[tuple[str, str, str]]:
    found = application_service.list_applications(tenant_id=current().user.tenant_id)
    return [(a.id, a.name, a.id) for a in found]


def _known_clients() -> set[str]:
    return {client_id for client_id, _, _ in _applications()}


def _row(connection: Connection) -> dict[str, Any]:
    options = dict(connection.options)
    return {
        "id": connection.id,
        "name": connection.name,
        "display_name": connection.display_name,
        "strategy": connection.strategy,
        "strategy_label": STRATEGY_LABELS.get(connection.strategy, connection.strategy),
        "database": connection.strategy == connection_service.DATABASE_STRATEGY,
        "enabled_clients": list(connection.enabled_clients),
        "has_secret": connection.client_secret_encrypted is not None,
        # What the form shows: the stored options (the secret is never among them).
        "options": {
            key: "\n".join(f"{k} = {v}" for k, v in value.items())
            if isinstance(value, dict)
            else str(value)
            for key, value in options.items()
        },
    }


def _form_context(**extra: Any) -> dict[str, Any]:
    return {
        "strategies": STRATEGY_LABELS,
        "applications": _applications(),
        **extra,
    }


def _values(row: dict[str, Any]) -> dict[str, Any]:
    """The edit form's values: the row's display name, options and applications."""
    values = {f"options.{key}": value for key, value in row["options"].items()}
    return {**values, "display_name": row["display_name"] or "", MULTI[0]: row[MULTI[0]]}


@blp.route("/connections", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def connections() -> Response:
    """List the tenant's connections, the database connection first"""
    found = connection_service.list_connections()
    return page(
        "connections.html",
        notice=NOTICES.get(request.args.get("done", "")),
        connections=[_row(c) for c in found],
    )


@blp.route("/connections/new", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="admin")
def new_connection() -> Response:
    """The form that adds a connection"""
    return page("connection.html", connection=None, **_form_context(values={MULTI[0]: []}))


@blp.route("/connections", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def create_connection() -> Response:
    """Add a connection (its client secret is stored encrypted and never shown)"""
    show_form_on_error(
        "connection.html", connection=None, **_form_context(values=posted(multi=MULTI))
    )
    form = read_form(NewConnectionForm(), "Check the highlighted fields.", multi=MULTI)
    connection = connection_service.create_connection(
        name=form["name"],
        strategy=form["strategy"],
        known_clients=_known_clients(),
        actor=current().actor,
        **_fields(form),
    )
    return redirect(
        url_for("console.connection", connection_id=connection.id, done="created"), code=303
    )  # type: ignore[return-value]


@blp.route("/connections/<connection_id>", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def connection(connection_id: str) -> Response:
    """Show a connection (an admin also changes it)"""
    row = _row(connection_service.get_connection(connection_id))
    return page(
        "connection.html",
        notice=NOTICES.get(request.args.get("done", "")),
        connection=row,
        **_form_context(values=_values(row)),
    )


@blp.route("/connections/<connection_id>", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def update_connection(connection_id: str) -> Response:
    """Change a connection's display name, options and applications (a blank client
    secret keeps the stored one)"""
    row = _row(connection_service.get_connection(connection_id))
    show_form_on_error(
        "connection.html", connection=row, **_form_context(values=posted(multi=MULTI))
    )
    form = read_form(ConnectionForm(), "Check the highlighted fields.", multi=MULTI)
    connection_service.update_connection(
        connection_id,
        fields=_fields(form),
        known_clients=_known_clients(),
        actor=current().actor,
    )
    return redirect(
        url_for("console.connection", connection_id=connection_id, done="saved"), code=303
    )  # type: ignore[return-value]


@blp.route("/connections/<connection_id>/delete", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="admin")
def confirm_delete_connection(connection_id: str) -> Response:
    """Ask to confirm deleting a connection"""
    row = _row(connection_service.get_connection(connection_id))
    return page(
        "confirm_action.html",
        heading="Delete a connection",
        question=f"Delete the connection {row['name']} ({row['strategy_label']})?",
        consequence="Its users can no longer sign in through it. This cannot be undone.",
        action=url_for("console.delete_connection", connection_id=connection_id),
        button="Delete the connection",
        cancel=url_for("console.connection", connection_id=connection_id),
    )


@blp.route("/connections/<connection_id>/delete", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def delete_connection(connection_id: str) -> Response:
    """Delete a connection"""
    connection_service.delete_connection(connection_id, actor=current().actor)
    return redirect(url_for("console.connections", done="deleted"), code=303)  # type: ignore[return-value]
