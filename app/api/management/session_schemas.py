"""Shapes of a user's sign-in sessions on the management surface, as Auth0's "Get sessions
for user" answers them: what Gatehouse knows of each (no ASN, no idle expiry, no cookie)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.api.fields import IsoDateTime, OutputSchema


class SessionDeviceSchema(OutputSchema):
    initial_ip = ma.fields.String(attribute="ip", allow_none=True)
    initial_user_agent = ma.fields.String(attribute="user_agent", allow_none=True)


class SessionClientSchema(OutputSchema):
    client_id = ma.fields.String()


class AuthenticationMethodUsedSchema(OutputSchema):
    name = ma.fields.String(metadata={"description": "an OIDC `amr` value: pwd, otp, hwk, …"})
    timestamp = IsoDateTime()


class SessionAuthenticationSchema(OutputSchema):
    methods = ma.fields.List(ma.fields.Nested(AuthenticationMethodUsedSchema))


class SessionSchema(OutputSchema):
    """A sign-in session; `clients` are the applications whose sessions began through it
    (its own application for an app's session; none for an API sign-in)."""

    id = ma.fields.String()
    user_id = ma.fields.String()
    created_at = IsoDateTime()
    updated_at = IsoDateTime()
    authenticated_at = IsoDateTime()
    last_interacted_at = IsoDateTime()
    expires_at = IsoDateTime()
    device = ma.fields.Nested(SessionDeviceSchema)
    clients = ma.fields.List(ma.fields.Nested(SessionClientSchema))
    authentication = ma.fields.Nested(SessionAuthenticationSchema)

    @ma.pre_dump
    def _from_view(self, view: Any, **_: Any) -> dict[str, Any]:
        """Auth0's names for a tokens.sessions.SessionView's fields."""
        client_ids = [view.client_id, *(child.client_id for child in view.children)]
        return {
            "id": view.id,
            "user_id": view.user_id,
            "created_at": view.created_at,
            "updated_at": view.last_seen_at,
            "authenticated_at": view.auth_time,
            "last_interacted_at": view.last_seen_at,
            "expires_at": view.expires_at,
            "device": view,
            "clients": [{"client_id": c} for c in dict.fromkeys(client_ids) if c],
            "authentication": {
                "methods": [{"name": name, "timestamp": view.auth_time} for name in view.amr]
            },
        }


class SessionListSchema(OutputSchema):
    sessions = ma.fields.List(ma.fields.Nested(SessionSchema))
