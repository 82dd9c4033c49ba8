"""Shapes of the platform surface: tenants with settings, API keys, health."""

from __future__ import annotations

from datetime import UTC

import marshmallow as ma

from app.api.fields import IsoDateTime, OutputSchema, ScopeName, StrictBoolean, StrictSchema
from app.audit.service import EXPORT_MAX_ROWS
from app.core.scopes import KEY_SCOPES

HOST_REGEX = r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?\Z"
DAY = 24 * 3600
WEAK_PASSWORD_HASHES = ("accept", "reset")
# What the hosted sign-up page may ask for besides the email address and the password.
SIGNUP_FIELDS = ("name", "given_name", "family_name", "nickname", "username")


class PasswordPolicyInSchema(StrictSchema):
    min_length = ma.fields.Integer(validate=ma.validate.Range(min=1, max=1024))
    block_common = StrictBoolean(
        metadata={
            "description": "refuse, on the hosted pages, a password on the shipped list "
            "of the most common breached passwords (default true)"
        }
    )


class BrandingInSchema(StrictSchema):
    """The hosted pages' look; null removes a key."""

    display_name = ma.fields.String(allow_none=True, validate=ma.validate.Length(min=1, max=100))
    logo_url = ma.fields.Url(
        allow_none=True, schemes={"https"}, validate=ma.validate.Length(max=2048)
    )
    primary_color = ma.fields.String(
        allow_none=True, validate=ma.validate.Regexp(r"^#[0-9a-fA-F]{6}\Z")
    )
    support_url = ma.fields.Url(
        allow_none=True, schemes={"https", "mailto"}, validate=ma.validate.Length(max=2048)
    )


class PasswordPolicyOutSchema(OutputSchema):
    min_length = ma.fields.Integer()
    block_common = ma.fields.Boolean()


class BrandingOutSchema(OutputSchema):
    display_name = ma.fields.String(allow_none=True)
    logo_url = ma.fields.String(allow_none=True)
    primary_color = ma.fields.String(allow_none=True)
    support_url = ma.fields.String(allow_none=True)


class TenantSettingsInSchema(StrictSchema):
    allow_user_token_management = StrictBoolean()
    email_from = ma.fields.Email(allow_none=True, validate=ma.validate.Length(max=255))
    postmark_server_token = ma.fields.String(
        load_only=True, allow_none=True, validate=ma.validate.Length(max=255)
    )
    password_reset_hosts = ma.fields.List(
        ma.fields.String(validate=ma.validate.Regexp(HOST_REGEX)),
        validate=ma.validate.Length(max=100),
    )
    password_min_length = ma.fields.Integer(validate=ma.validate.Range(min=1, max=1024))
    weak_password_hashes = ma.fields.String(
        validate=ma.validate.OneOf(WEAK_PASSWORD_HASHES),
        metadata={
            "description": "imported md4/md5/sha1/unsalted hashes: `accept` (verified once, "
            "then rehashed to argon2id) or `reset` (the user must reset the password)"
        },
    )
    access_token_ttl = ma.fields.Integer(
        allow_none=True, validate=ma.validate.Range(min=60, max=DAY)
    )
    refresh_token_ttl = ma.fields.Integer(
        allow_none=True, validate=ma.validate.Range(min=60, max=365 * DAY)
    )
    signup_enabled = StrictBoolean(
        metadata={"description": "the hosted login page offers sign-up (default false)"}
    )
    password_policy = ma.fields.Nested(PasswordPolicyInSchema)
    signup_fields = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(SIGNUP_FIELDS)),
        validate=ma.validate.Length(max=len(SIGNUP_FIELDS)),
        metadata={"description": "profile fields the sign-up page asks for"},
    )
    mfa_required = StrictBoolean(
        metadata={"description": "every sign-in needs a second factor (enrolled in place)"}
    )
    console_require_mfa = StrictBoolean(
        metadata={"description": "the admin console admits only sign-ins with a second factor"}
    )
    branding = ma.fields.Nested(BrandingInSchema)


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


class AuditEventSchema(OutputSchema):
    id = ma.fields.String()
    action = ma.fields.String()
    actor = ma.fields.String()
    user_id = ma.fields.String(allow_none=True)
    target = ma.fields.String(allow_none=True)
    ip = ma.fields.String(allow_none=True)
    created_at = IsoDateTime()
    data = ma.fields.Dict()


AUDIT_CSV_COLUMNS = tuple(AuditEventSchema().fields)


class AuditPageSchema(OutputSchema):
    items = ma.fields.List(ma.fields.Nested(AuditEventSchema))
    next_cursor = ma.fields.String(allow_none=True)
