"""Shapes of registered applications on the platform surface."""

from __future__ import annotations

import marshmallow as ma

from app.api.fields import IsoDateTime, OutputSchema, ScopeName, StrictBoolean, StrictSchema
from app.applications.service import TYPES
from app.core.scopes import APP_SCOPES

MAX_URIS = 20


def _scopes() -> ma.fields.List:
    return ma.fields.List(
        ma.fields.String(validate=ScopeName(APP_SCOPES)),
        validate=ma.validate.Length(max=len(APP_SCOPES)),
        metadata={
            "description": "What the app may obtain for a user (what it asks for and the "
            "user holds, within this list); default: the OIDC and current-user scopes"
        },
    )


def _mfa_required() -> StrictBoolean:
    return StrictBoolean(
        metadata={
            "description": "Users signing in to this app need a second factor (one is "
            "enrolled on the hosted login page when they have none)"
        }
    )


def _uris(max_length: int) -> ma.fields.List:
    return ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=max_length)),
        validate=ma.validate.Length(max=MAX_URIS),
    )


class CreateApplicationSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    type = ma.fields.String(required=True, validate=ma.validate.OneOf(TYPES))
    redirect_uris = _uris(2048)
    allowed_origins = _uris(255)
    post_logout_redirect_uris = _uris(2048)
    allowed_scopes = _scopes()
    mfa_required = _mfa_required()


class PatchApplicationSchema(StrictSchema):
    """The type is fixed at creation: a secret cannot appear or vanish by a PATCH."""

    name = ma.fields.String(validate=ma.validate.Length(min=1, max=255))
    redirect_uris = _uris(2048)
    allowed_origins = _uris(255)
    post_logout_redirect_uris = _uris(2048)
    allowed_scopes = _scopes()
    mfa_required = _mfa_required()


class ApplicationSchema(OutputSchema):
    client_id = ma.fields.String(attribute="id")
    name = ma.fields.String()
    type = ma.fields.String()
    redirect_uris = ma.fields.List(ma.fields.String())
    allowed_origins = ma.fields.List(ma.fields.String())
    post_logout_redirect_uris = ma.fields.List(ma.fields.String())
    allowed_scopes = ma.fields.List(ma.fields.String(), attribute="permitted_scopes")
    mfa_required = ma.fields.Boolean()
    created_at = IsoDateTime()
    updated_at = IsoDateTime()


class IssuedApplicationSchema(OutputSchema):
    """A new application; `client_secret` (confidential apps) is shown only here."""

    client_id = ma.fields.String(attribute="application.id")
    client_secret = ma.fields.String(allow_none=True)
    name = ma.fields.String(attribute="application.name")
    type = ma.fields.String(attribute="application.type")
    redirect_uris = ma.fields.List(ma.fields.String(), attribute="application.redirect_uris")
    allowed_origins = ma.fields.List(ma.fields.String(), attribute="application.allowed_origins")
    post_logout_redirect_uris = ma.fields.List(
        ma.fields.String(), attribute="application.post_logout_redirect_uris"
    )
    allowed_scopes = ma.fields.List(ma.fields.String(), attribute="application.permitted_scopes")
    mfa_required = ma.fields.Boolean(attribute="application.mfa_required")
    created_at = IsoDateTime(attribute="application.created_at")
    updated_at = IsoDateTime(attribute="application.updated_at")
