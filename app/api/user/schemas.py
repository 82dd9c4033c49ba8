"""Shapes of the user surface: the base user row and the full profile."""

from __future__ import annotations

import marshmallow as ma

from app.api.dump import CompiledOutputSchema
from app.api.fields import IsoDateTime, OutputSchema, StrictSchema


class PolicySchema(OutputSchema):
    resource = ma.fields.String()
    resource_type = ma.fields.String()
    type = ma.fields.String()


class SettingSchema(OutputSchema):
    key = ma.fields.String()
    value = ma.fields.Raw()


class IdentitySchema(OutputSchema):
    provider = ma.fields.String()
    user_id = ma.fields.String()
    connection = ma.fields.String()
    isSocial = ma.fields.Boolean()
    profileData = ma.fields.Dict()


class BaseUserSchema(CompiledOutputSchema):
    """A user row (a hot answer: dumped through a compiled plan)."""

    id = ma.fields.String()
    tenant_id = ma.fields.String()
    username = ma.fields.String(allow_none=True)
    email = ma.fields.String(allow_none=True)
    email_verified = ma.fields.Boolean()
    display_name = ma.fields.String(allow_none=True)
    first_name = ma.fields.String(allow_none=True)
    last_name = ma.fields.String(allow_none=True)
    photo_url = ma.fields.String(allow_none=True)
    blocked = ma.fields.Boolean()
    created_at = IsoDateTime()
    updated_at = IsoDateTime()


class ProfileSchema(BaseUserSchema):
    phone_number = ma.fields.String(allow_none=True)
    permissions_group = ma.fields.String(allow_none=True)
    custom_scopes = ma.fields.List(ma.fields.String())
    permissions = ma.fields.List(ma.fields.Nested(PolicySchema), attribute="policies")
    settings = ma.fields.List(ma.fields.Nested(SettingSchema))
    user_metadata = ma.fields.Dict()
    app_metadata = ma.fields.Dict()
    require_twofactor_auth = ma.fields.Boolean()
    identities = ma.fields.List(ma.fields.Nested(IdentitySchema))
    last_activity_at = IsoDateTime()
    last_login_at = IsoDateTime()
    logins_count = ma.fields.Integer()


class SecretSchema(OutputSchema):
    """Secret metadata: never the value."""

    id = ma.fields.String()
    name = ma.fields.String()
    created_at = IsoDateTime()
    updated_at = IsoDateTime()
    version = ma.fields.Integer()


class SecretPageSchema(OutputSchema):
    items = ma.fields.List(ma.fields.Nested(SecretSchema))
    next_cursor = ma.fields.String(allow_none=True)


class CreateSecretSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    # The 64 KiB limit is on UTF-8 bytes, checked by the service (413).
    value = ma.fields.String(required=True)


class UpdateSecretSchema(StrictSchema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    value = ma.fields.String()


class PropertySchema(OutputSchema):
    id = ma.fields.String()
    name = ma.fields.String()
    value = ma.fields.Raw(allow_none=True)
    created_at = IsoDateTime()
    updated_at = IsoDateTime()
    version = ma.fields.Integer()


class PropertyPageSchema(OutputSchema):
    items = ma.fields.List(ma.fields.Nested(PropertySchema))
    next_cursor = ma.fields.String(allow_none=True)


class CreatePropertySchema(StrictSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    value = ma.fields.Raw(required=True, allow_none=True)


class UpdatePropertySchema(StrictSchema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    value = ma.fields.Raw(required=True, allow_none=True)
