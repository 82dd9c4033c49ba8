"""The tenant settings a caller may write, and their checks: one schema for PATCH
/tenants/{id} (the platform surface) and the console's Settings page, so both accept and
refuse exactly the same values (the service, app.tenants.service.update_tenant, merges)."""

from __future__ import annotations

import marshmallow as ma

from app.api.fields import StrictBoolean, StrictSchema

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
