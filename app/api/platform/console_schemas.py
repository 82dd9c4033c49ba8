"""Shapes of console members on the platform surface."""

from __future__ import annotations

import marshmallow as ma

from app.api.fields import IsoDateTime, OutputSchema, StrictSchema
from app.console.service import ROLES


class GrantConsoleMemberSchema(StrictSchema):
    user_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    role = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(ROLES),
        metadata={
            "description": "console:admin (everything), console:support (read, and act on "
            "users) or console:viewer (read only)"
        },
    )


class ConsoleMemberSchema(OutputSchema):
    user_id = ma.fields.String()
    email = ma.fields.String(allow_none=True)
    role = ma.fields.String(metadata={"enum": list(ROLES)})
    created_at = IsoDateTime()
    granted_by = ma.fields.String(
        metadata={"description": "Who granted the role last (audit label: cli, api_key:…)"}
    )
