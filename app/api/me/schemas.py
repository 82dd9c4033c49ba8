"""Shapes of the me surface: the `users/me` document (epoch seconds / milliseconds) and
TOTP enrolment."""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

import marshmallow as ma

from app.api.fields import IsoDateTime, OutputSchema, entity_tag
from app.users.models import User


def _seconds(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def _millis(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


MAX_SETTINGS = 200


class SettingSchema(ma.Schema):
    """One `{key, value}` setting; PUT /users/me/settings takes and answers a list of them."""

    EMPTY_BODY_CODE = "NO_BODY_GIVEN"

    class Meta:
        unknown = ma.RAISE

    key = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    value = ma.fields.Raw(required=True, allow_none=True)


class MeUpdateSchema(ma.Schema):
    """Fields other than these are ignored; a body with none of them is NO_MUTATIONS_GIVEN."""

    EMPTY_BODY_CODE = "NO_BODY_GIVEN"

    class Meta:
        unknown = ma.EXCLUDE

    firstname = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=255))
    lastname = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=255))
    password = ma.fields.String(load_only=True, validate=ma.validate.Length(min=1, max=1024))


class MeDocumentSchema(OutputSchema):
    custom_scopes = ma.fields.List(ma.fields.String())
    username = ma.fields.String(allow_none=True)
    firstname = ma.fields.String(attribute="first_name", allow_none=True)
    lastname = ma.fields.String(attribute="last_name", allow_none=True)
    email = ma.fields.String(allow_none=True)
    permissions_group = ma.fields.String(allow_none=True)
    settings = ma.fields.List(ma.fields.Dict())
    require_twofactor_auth = ma.fields.Boolean()
    last_activity_date = ma.fields.Function(lambda u: _seconds(u.last_login_at))
    device_token = ma.fields.String(allow_none=True)
    device_type = ma.fields.String(allow_none=True)
    last_activity = ma.fields.Function(lambda u: _seconds(u.last_activity_at))
    _meta = ma.fields.Method("_document_meta", data_key="_meta")
    websocket_id = ma.fields.Constant(None)

    def _document_meta(self, user: User) -> dict[str, Any]:
        return {
            "guid": user.id,
            "expiry": -1,
            "entity": zlib.crc32(f"{user.tenant_id}:{user.id}".encode()) & 0x7FFFFFFF,
            "removed": 0,
            "created": _seconds(user.created_at),
            "updated": _seconds(user.updated_at),
            "ums": _millis(user.updated_at),
            "cms": _millis(user.created_at),
            "update_hash": entity_tag(user),
        }


class MeUpdatedSchema(OutputSchema):
    username = ma.fields.String(allow_none=True)
    firstname = ma.fields.String(attribute="first_name", allow_none=True)
    lastname = ma.fields.String(attribute="last_name", allow_none=True)
    _meta = ma.fields.Function(lambda u: {"guid": u.id}, data_key="_meta")


class ResetRequestSchema(ma.Schema):
    EMPTY_BODY_CODE = "EMPTY_BODY"

    class Meta:
        unknown = ma.RAISE

    username = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    email = ma.fields.String(validate=ma.validate.Length(min=1, max=255))
    host = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=259))

    @ma.validates_schema
    def _one_given(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("username") and not data.get("email"):
            raise ma.ValidationError("Give username or email.", "_schema")


class ResetConfirmSchema(ma.Schema):
    EMPTY_BODY_CODE = "EMPTY_BODY"

    class Meta:
        unknown = ma.RAISE

    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2048))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))


class OkSchema(OutputSchema):
    msg = ma.fields.String()


class TotpStartSchema(OutputSchema):
    """A started TOTP enrolment: the secret (shown only here) and its otpauth:// URI."""

    id = ma.fields.String(attribute="enrolment.id")
    type = ma.fields.String(attribute="enrolment.type")
    status = ma.fields.String(attribute="enrolment.status")
    secret = ma.fields.String()
    otpauth_uri = ma.fields.String(attribute="uri")


class TotpConfirmSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    code = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^\d{6}$"))


class EnrolmentSchema(OutputSchema):
    id = ma.fields.String()
    type = ma.fields.String()
    status = ma.fields.String()
    enrolled_at = IsoDateTime(attribute="created_at")
    confirmed_at = IsoDateTime(allow_none=True)
