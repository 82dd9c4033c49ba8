"""Shapes of the platform surface: tenants with settings, API keys, health."""

from __future__ import annotations

from datetime import UTC

import marshmallow as ma

from app.api.audit_export import AuditEventSchema
from app.api.fields import IsoDateTime, OutputSchema, ScopeName, StrictSchema
from app.api.tenant_settings import TenantSettingsInSchema
from app.audit.service import EXPORT_MAX_ROWS
from app.core.scopes import KEY_SCOPES


class PasswordPolicyOutSchema(OutputSchema):
    min_length = ma.fields.Integer()
    block_common = ma.fields.Boolean()


class BrandingOutSchema(OutputSchema):
    display_name = ma.fields.String(allow_none=True)
    logo_url = ma.fields.String(allow_none=True)
    primary_color = ma.fields.String(allow_none=True)
    support_url = ma.fields.String(allow_none=True)


class TenantSettingsOutSchema(OutputSchema):
    allow_user_token_management = ma.fields.Boolean()
    email_from = ma.fields.String(allow_none=True)
    postmark_server_token_set = ma.fields.Boolean()
    password_reset_hosts = ma.fields.List(ma.fields.String())
    password_min_length = ma.fields.Integer()
    weak_password_hashes = ma.fields.String()
    access_token_ttl = ma.fields.Integer(allow_none=True)
    refresh_token_ttl = ma.fields.Integer(allow_none=True)
    signup_enabled = ma.fields.Boolean()
    password_policy = ma.fields.Nested(PasswordPolicyOutSchema)
    signup_fields = ma.fields.List(ma.fields.String())
    mfa_required = ma.fields.Boolean()
    console_require_mfa = ma.fields.Boolean()
    branding = ma.fields.Nested(BrandingOutSchema)


class CreateTenantSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    settings = ma.fields.Nested(TenantSettingsInSchema)


class PatchTenantSchema(StrictSchema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=255))
    settings = ma.fields.Nested(TenantSettingsInSchema)


class TenantSchema(OutputSchema):
    id = ma.fields.String()
    name = ma.fields.String()
    settings = ma.fields.Nested(TenantSettingsOutSchema)
    created_at = IsoDateTime()


class TenantQuerySchema(StrictSchema):
    limit = ma.fields.Integer(validate=ma.validate.Range(min=1, max=100))
    cursor = ma.fields.String(validate=ma.validate.Length(max=512))


class TenantPageSchema(OutputSchema):
    items = ma.fields.List(ma.fields.Nested(TenantSchema))
    next_cursor = ma.fields.String(allow_none=True)


class CreateApiKeySchema(StrictSchema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=128), allow_none=True)
    scopes = ma.fields.List(
        # The catalogue (app/core/scopes.py) is the enum, so /openapi.json lists it too.
        ma.fields.String(validate=ScopeName(KEY_SCOPES)),
        validate=ma.validate.Length(min=1, max=64),
    )


class ApiKeySchema(OutputSchema):
    id = ma.fields.String()
    name = ma.fields.String(allow_none=True)
    scopes = ma.fields.List(ma.fields.String())
    created_at = IsoDateTime()
    last_used_at = IsoDateTime()
    revoked_at = IsoDateTime()


class IssuedApiKeySchema(OutputSchema):
    id = ma.fields.String(attribute="api_key.id")
    key = ma.fields.String(attribute="raw_key")
    name = ma.fields.String(attribute="api_key.name", allow_none=True)
    scopes = ma.fields.List(ma.fields.String(), attribute="api_key.scopes")
    created_at = IsoDateTime(attribute="api_key.created_at")


class HealthSchema(OutputSchema):
    status = ma.fields.String()
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String())


def _moment(name: str, description: str) -> ma.fields.AwareDateTime:
    return ma.fields.AwareDateTime(
        default_timezone=UTC,
        data_key=name,
        metadata={"description": f"ISO 8601 time (UTC unless it names a zone), {description}"},
    )


class AuditFilterSchema(StrictSchema):
    """The filters of the audit log, its CSV export's too; a cursor continues the same set."""

    user_id = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    action = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    actor = ma.fields.String(validate=ma.validate.Length(min=1, max=255))
    since = _moment("from", "inclusive")
    until = _moment("to", "exclusive")
    cursor = ma.fields.String(validate=ma.validate.Length(max=512))


class AuditQuerySchema(AuditFilterSchema):
    limit = ma.fields.Integer(validate=ma.validate.Range(min=1, max=100))


class AuditExportQuerySchema(AuditFilterSchema):
    limit = ma.fields.Integer(
        load_default=EXPORT_MAX_ROWS,
        validate=ma.validate.Range(min=1, max=EXPORT_MAX_ROWS),
        metadata={"description": f"rows in this answer (at most {EXPORT_MAX_ROWS}, the default)"},
    )


class AuditPageSchema(OutputSchema):
    items = ma.fields.List(ma.fields.Nested(AuditEventSchema))
    next_cursor = ma.fields.String(allow_none=True)
