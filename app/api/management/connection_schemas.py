"""Shapes of the management surface for connections: Auth0's connection object and its list
pages, and the bodies that create and change one (the client secret goes in, never out)."""

from __future__ import annotations

import marshmallow as ma

from app.api.fields import OutputSchema, StrictBoolean, StrictSchema
from app.api.management.schemas import PageSchema

_url = ma.validate.Length(min=1, max=2048)
_scopes = ma.validate.Length(max=1024)


class ConnectionOptionsSchema(StrictSchema):
    """Every option a strategy may take (the service says which one takes which)."""

    discovery_url = ma.fields.String(validate=_url)
    issuer = ma.fields.String(validate=_url)
    authorizationURL = ma.fields.String(validate=_url)  # noqa: N815 - Auth0's own name
    tokenURL = ma.fields.String(validate=_url)  # noqa: N815
    userinfoURL = ma.fields.String(validate=_url)  # noqa: N815
    client_id = ma.fields.String(validate=ma.validate.Length(min=1, max=256))
    client_secret = ma.fields.String(load_only=True, validate=ma.validate.Length(min=1, max=4096))
    scopes = ma.fields.String(validate=_scopes)
    scope = ma.fields.String(validate=_scopes)
    type = ma.fields.String(validate=ma.validate.Length(min=1, max=32))
    profile_map = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.Length(min=1, max=64)),
        values=ma.fields.String(validate=ma.validate.Length(min=1, max=512)),
        validate=ma.validate.Length(min=1, max=16),
    )


_clients = ma.fields.List(
    ma.fields.String(validate=ma.validate.Length(min=1, max=64)),
    validate=ma.validate.Length(max=100),
)
# Only an ordinary connection: a domain connection (third-party apps) does not exist here.
_not_domain = ma.validate.Equal(False, error="Domain connections are not supported.")


class CreateConnectionSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    strategy = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    display_name = ma.fields.String(validate=ma.validate.Length(min=1, max=255))
    options = ma.fields.Nested(ConnectionOptionsSchema, required=True)
    enabled_clients = _clients
    is_domain_connection = StrictBoolean(validate=_not_domain)


class UpdateConnectionSchema(StrictSchema):
    display_name = ma.fields.String(allow_none=True, validate=ma.validate.Length(min=1, max=255))
    options = ma.fields.Nested(ConnectionOptionsSchema)
    enabled_clients = _clients
    is_domain_connection = StrictBoolean(validate=_not_domain)


class ConnectionSchema(OutputSchema):
    id = ma.fields.String()
    name = ma.fields.String()
    display_name = ma.fields.String(allow_none=True)
    strategy = ma.fields.String()
    realms = ma.fields.List(ma.fields.String())
    is_domain_connection = ma.fields.Boolean()
    enabled_clients = ma.fields.List(ma.fields.String())
    # The stored options: the client secret is not among them.
    options = ma.fields.Dict()


CONNECTION_FIELDS = frozenset(ConnectionSchema().fields)


class ConnectionPageSchema(PageSchema):
    """`include_totals=true`: `{start, limit, length, total, connections}`; with checkpoint
    paging (`from`/`take`): `{connections}`, and `next` (the `from` of the next page)
    while more remain."""

    connections = ma.fields.List(ma.fields.Nested(ConnectionSchema))
    next = ma.fields.String()


class ListConnectionsQuerySchema(StrictSchema):
    # One value, several (`strategy=a&strategy=b`, as the SDK sends a list) or comma-separated.
    strategy = ma.fields.List(ma.fields.String(validate=ma.validate.Length(min=1, max=64)))
    name = ma.fields.String(validate=ma.validate.Length(max=128))
    fields = ma.fields.String(validate=ma.validate.Length(max=1024))
    include_fields = ma.fields.Boolean(load_default=True)
    include_totals = ma.fields.Boolean(load_default=False)
    page = ma.fields.Integer(validate=ma.validate.Range(min=0, max=1_000_000))
    per_page = ma.fields.Integer(validate=ma.validate.Range(min=1, max=100))
    from_ = ma.fields.String(data_key="from", validate=ma.validate.Length(max=64))
    take = ma.fields.Integer(validate=ma.validate.Range(min=1, max=100))


class ConnectionQuerySchema(StrictSchema):
    fields = ma.fields.String(validate=ma.validate.Length(max=1024))
    include_fields = ma.fields.Boolean(load_default=True)
