"""Shapes of the directory surface: users as `{username, password_hash}`, policies."""

from __future__ import annotations

import base64

import marshmallow as ma

from app.api.fields import OutputSchema, StrictSchema
from app.users.models import User

NO_SPACES = r"^\S+\Z"


class PolicyInSchema(StrictSchema):
    resource = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=255), ma.validate.Regexp(NO_SPACES)],
    )
    resource_type = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=128), ma.validate.Regexp(NO_SPACES)],
    )
    type = ma.fields.String(required=True, validate=ma.validate.OneOf(["read", "write", "admin"]))


class PolicySchema(OutputSchema):
    resource = ma.fields.String()
    resource_type = ma.fields.String()
    type = ma.fields.String()


class CreateUserSchema(StrictSchema):
    username = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    password = ma.fields.String(required=True, load_only=True)
    initial_policies = ma.fields.List(
        ma.fields.Nested(PolicyInSchema), load_default=list, validate=ma.validate.Length(max=100)
    )


class NewPasswordSchema(StrictSchema):
    new_password = ma.fields.String(required=True, load_only=True)


def _encoded_hash(user: User) -> str | None:
    if user.password_hash is None:
        return None
    return base64.b64encode(user.password_hash.encode()).decode()


class UserSchema(OutputSchema):
    username = ma.fields.String(allow_none=True)
    password_hash = ma.fields.Function(_encoded_hash)


class UsernameSchema(OutputSchema):
    username = ma.fields.String()


class MeSchema(OutputSchema):
    username = ma.fields.String(allow_none=True)
    permissions = ma.fields.List(ma.fields.Nested(PolicySchema), attribute="policies")


class MessageSchema(OutputSchema):
    message = ma.fields.String()
