"""Shapes of the management surface: Auth0's user, identity, enrolment and device
credential objects, its list pages, query parameters and request bodies."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma

from app.api.fields import USER_ID_REGEX, IsoDateTime, OutputSchema, StrictBoolean, StrictSchema

_user_id = ma.validate.Regexp(USER_ID_REGEX, error="A user id is 1-128 of A-Z a-z 0-9 . _ @ | : -")
_name = ma.validate.Length(max=255)


class IdentitySchema(OutputSchema):
    connection = ma.fields.String(required=True)
    user_id = ma.fields.String(required=True)
    provider = ma.fields.String(required=True)
    isSocial = ma.fields.Boolean()
    profileData = ma.fields.Dict()


class UserSchema(OutputSchema):
    user_id = ma.fields.String(attribute="id")
    email = ma.fields.String(allow_none=True)
    email_verified = ma.fields.Boolean()
    username = ma.fields.String(allow_none=True)
    phone_number = ma.fields.String(allow_none=True)
    created_at = IsoDateTime()
    updated_at = IsoDateTime()
    identities = ma.fields.List(ma.fields.Nested(IdentitySchema))
    app_metadata = ma.fields.Dict()
    user_metadata = ma.fields.Dict()
    picture = ma.fields.String(attribute="photo_url", allow_none=True)
    name = ma.fields.String(attribute="display_name", allow_none=True)
    nickname = ma.fields.String(allow_none=True)
    given_name = ma.fields.String(attribute="first_name", allow_none=True)
    family_name = ma.fields.String(attribute="last_name", allow_none=True)
    last_login = IsoDateTime(attribute="last_login_at", allow_none=True)
    logins_count = ma.fields.Integer()
    blocked = ma.fields.Boolean()


USER_FIELDS = frozenset(UserSchema().fields)


class PageSchema(OutputSchema):
    """`include_totals=true`: a page with its position and the total (the items are in
    a list named by the subclass)."""

    start = ma.fields.Integer()
    limit = ma.fields.Integer()
    length = ma.fields.Integer()
    total = ma.fields.Integer()


PAGE_FIELDS = ("start", "limit", "length", "total")


class UserPageSchema(PageSchema):
    users = ma.fields.List(ma.fields.Nested(UserSchema))


class EnrollmentSchema(OutputSchema):
    id = ma.fields.String()
    status = ma.fields.String()
    type = ma.fields.String()
    auth_method = ma.fields.Constant("authenticator")
    enrolled_at = IsoDateTime(attribute="created_at")
    last_auth = IsoDateTime(attribute="last_auth_at", allow_none=True)


class DeviceCredentialSchema(OutputSchema):
    id = ma.fields.String()
    device_name = ma.fields.String()
    device_id = ma.fields.String()
    type = ma.fields.String()
    user_id = ma.fields.String()
    client_id = ma.fields.String(allow_none=True)


DEVICE_FIELDS = frozenset(DeviceCredentialSchema().fields)


class DeviceCredentialPageSchema(PageSchema):
    device_credentials = ma.fields.List(ma.fields.Nested(DeviceCredentialSchema))


class CreatedIdSchema(OutputSchema):
    id = ma.fields.String(required=True)


class FieldsQuerySchema(StrictSchema):
    fields = ma.fields.String(validate=ma.validate.Length(max=1024))
    include_fields = ma.fields.Boolean(load_default=True)


class PageQuerySchema(FieldsQuerySchema):
    page = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=1_000_000))
    per_page = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=100))
    include_totals = ma.fields.Boolean(load_default=False)


class ListUsersQuerySchema(PageQuerySchema):
    q = ma.fields.String(validate=ma.validate.Length(max=1024))
    sort = ma.fields.String(validate=ma.validate.Length(max=64))
    # Accepted for Auth0 clients; one search engine and one connection here, so no effect.
    search_engine = ma.fields.String(validate=ma.validate.OneOf(["v1", "v2", "v3"]))
    connection = ma.fields.String(validate=ma.validate.Length(max=128))
    primary_order = ma.fields.Boolean()


class UsersByEmailQuerySchema(FieldsQuerySchema):
    email = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))


class ListDevicesQuerySchema(PageQuerySchema):
    user_id = ma.fields.String(validate=_user_id)
    client_id = ma.fields.String(validate=ma.validate.Length(max=128))
    type = ma.fields.String(
        validate=ma.validate.OneOf(["public_key", "refresh_token", "rotating_refresh_token"])
    )


class _UserBodySchema(StrictSchema):
    """Fields shared by create and update, named as Auth0 names them; loaded under the
    domain's names (`name` → display_name …)."""

    email = ma.fields.String(validate=ma.validate.Length(max=255), allow_none=True)
    email_verified = StrictBoolean()
    username = ma.fields.String(validate=ma.validate.Length(min=1, max=128), allow_none=True)
    phone_number = ma.fields.String(validate=ma.validate.Length(max=32), allow_none=True)
    user_metadata = ma.fields.Dict(keys=ma.fields.String(), allow_none=True)
    app_metadata = ma.fields.Dict(keys=ma.fields.String(), allow_none=True)
    blocked = StrictBoolean()
    display_name = ma.fields.String(data_key="name", validate=_name, allow_none=True)
    first_name = ma.fields.String(data_key="given_name", validate=_name, allow_none=True)
    last_name = ma.fields.String(data_key="family_name", validate=_name, allow_none=True)
    nickname = ma.fields.String(validate=_name, allow_none=True)
    photo_url = ma.fields.URL(
        data_key="picture", validate=ma.validate.Length(max=2048), allow_none=True
    )
    password = ma.fields.String(load_only=True, validate=ma.validate.Length(min=1, max=1024))
    # Accepted as Auth0 clients send them; no verification mail is sent here.
    verify_email = StrictBoolean(load_only=True)
    connection = ma.fields.String(load_only=True, validate=ma.validate.Length(min=1, max=128))


class CreateUserSchema(_UserBodySchema):
    connection = ma.fields.String(
        required=True, load_only=True, validate=ma.validate.Length(min=1, max=128)
    )
    user_id = ma.fields.String(validate=_user_id)


class UpdateUserSchema(_UserBodySchema):
    client_id = ma.fields.String(load_only=True, validate=ma.validate.Length(max=128))

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError("Give at least one property to change.", "_schema")


class LinkIdentitySchema(StrictSchema):
    provider = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    user_id = ma.fields.Raw()  # Auth0 allows a string or a number
    connection_id = ma.fields.String(validate=ma.validate.Length(max=128))
    link_with = ma.fields.String(validate=ma.validate.Length(min=1, max=8192))

    @ma.validates("user_id")
    def _user_id_form(self, value: Any, **kwargs: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ma.ValidationError("Must be a string or an integer.")
        if not _user_id_pattern_ok(str(value)):
            raise ma.ValidationError("A user id is 1-128 of A-Z a-z 0-9 . _ @ | : -")

    @ma.validates_schema
    def _one_way(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "link_with" in data:
            if data.keys() & {"provider", "user_id", "connection_id"}:
                raise ma.ValidationError(
                    "With link_with, provider, user_id and connection_id must not be sent.",
                    "link_with",
                )
        elif not {"provider", "user_id"} <= data.keys():
            raise ma.ValidationError("Give link_with, or provider and user_id.", "_schema")


def _user_id_pattern_ok(value: str) -> bool:
    return re.match(USER_ID_REGEX, value) is not None


class CreateDeviceCredentialSchema(StrictSchema):
    device_name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    type = ma.fields.String(required=True, validate=ma.validate.OneOf(["public_key"]))
    value = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=16384))
    device_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    client_id = ma.fields.String(validate=ma.validate.Length(max=128), allow_none=True)
    user_id = ma.fields.String(validate=_user_id)


class AuthenticationMethodSchema(OutputSchema):
    """Auth0's authentication method: a passkey or the TOTP enrolment (the fields of the
    other kind are left out)."""

    id = ma.fields.String()
    type = ma.fields.String(metadata={"enum": ["passkey", "totp"]})
    confirmed = ma.fields.Boolean()
    name = ma.fields.String()
    created_at = IsoDateTime()
    last_auth_at = IsoDateTime(allow_none=True)
    credential_device_type = ma.fields.String(metadata={"enum": ["single_device", "multi_device"]})
    credential_backed_up = ma.fields.Boolean()
    identity_user_id = ma.fields.String()
    key_id = ma.fields.String()
    public_key = ma.fields.String()
    user_handle = ma.fields.String()
    aaguid = ma.fields.String()
    relying_party_identifier = ma.fields.String()
    transports = ma.fields.List(ma.fields.String())
    usage = ma.fields.List(ma.fields.String())

    @ma.post_dump
    def _leave_out_other_kind(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if v is not None or k == "last_auth_at"}
