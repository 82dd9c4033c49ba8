"""Shapes of the accounts surface (camelCase, as the accounts (Firebase-style) API has them)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.api.fields import (
    USER_ID_REGEX,
    HttpDateTime,
    OutputSchema,
    StrictBoolean,
    StrictSchema,
)
from app.users.models import User

_http_date = HttpDateTime()


class AccountSchema(OutputSchema):
    uid = ma.fields.String(attribute="id")
    email = ma.fields.String(allow_none=True)
    emailVerified = ma.fields.Boolean(attribute="email_verified")
    displayName = ma.fields.String(attribute="display_name", allow_none=True)
    photoURL = ma.fields.String(attribute="photo_url", allow_none=True)
    phoneNumber = ma.fields.String(attribute="phone_number", allow_none=True)
    disabled = ma.fields.Boolean(attribute="blocked")
    metadata = ma.fields.Method("_metadata")
    customClaims = ma.fields.Dict(attribute="app_metadata")
    tokensValidAfterTime = HttpDateTime(attribute="tokens_valid_after")

    def _metadata(self, user: User) -> dict[str, Any]:
        return {
            "creationTime": _http_date.serialize("created_at", user),
            "lastSignInTime": _http_date.serialize("last_login_at", user),
        }


class WithoutEmail:
    """A user as shown to a caller who may not read its email: AccountSchema finds no
    `email` attribute, so the field is left out (not sent as null)."""

    def __init__(self, user: User) -> None:
        self._user = user

    def __getattr__(self, name: str) -> Any:
        if name == "email":
            raise AttributeError(name)
        return getattr(self._user, name)


class AccountQuerySchema(StrictSchema):
    userId = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    email = ma.fields.String(validate=ma.validate.Length(min=1, max=255))

    @ma.validates_schema
    def _one_given(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "userId" not in data and "email" not in data:
            raise ma.ValidationError("Give userId or email.", "_query")


class CreateAccountSchema(StrictSchema):
    uid = ma.fields.String(validate=ma.validate.Regexp(USER_ID_REGEX))
    displayName = ma.fields.String(validate=ma.validate.Length(max=255), allow_none=True)
    email = ma.fields.String(validate=ma.validate.Length(max=255), allow_none=True)
    emailVerified = StrictBoolean()
    photoURL = ma.fields.URL(validate=ma.validate.Length(max=2048), allow_none=True)
    password = ma.fields.String(load_only=True, validate=ma.validate.Length(max=1024))


class PatchAccountSchema(StrictSchema):
    email = ma.fields.String(validate=ma.validate.Length(min=1, max=255))
    emailVerified = StrictBoolean()

    @ma.validates_schema
    def _one_given(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError("Give email or emailVerified.", "_schema")


class GenerateTokenSchema(StrictSchema):
    userId = ma.fields.String(required=True, validate=ma.validate.Regexp(USER_ID_REGEX))


class CustomTokenSchema(OutputSchema):
    token = ma.fields.String()
    expiresIn = ma.fields.Integer(attribute="expires_in")


class SignInSchema(StrictSchema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=4096))


class RefreshSchema(StrictSchema):
    refreshToken = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=512))


class SessionSchema(OutputSchema):
    idToken = ma.fields.String(attribute="id_token")
    refreshToken = ma.fields.String(attribute="refresh_token")
    expiresIn = ma.fields.Integer(attribute="expires_in")
    accessToken = ma.fields.String(attribute="access_token")
    userId = ma.fields.String(attribute="user_id")
    isNewUser = ma.fields.Boolean(attribute="is_new_user")
