"""Shapes of the directory surface: users as `{username, password_hash}`, policies."""

from __future__ import annotations

import base64

import marshmallow as ma

from app.api.fields import OutputSchema, StrictSchema
from app.core import security
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
    # An imported hash (bcrypt, md5, Firebase scrypt…) is never shown (issue 24: only an
    # export that asks for hashes gives one out): null until the user's first sign-in
    # replaces it with argon2id, which is then shown as always.
    if user.password_hash is None or security.is_foreign_hash(user.password_hash):
        return None
    return base64.b64encode(user.password_hash.encode()).decode()


class UserSchema(OutputSchema):
    username = ma.fields.String(allow_none=True)
    password_hash = ma.fields.Function(
        _encoded_hash,
        allow_none=True,
        metadata={
            "description": "base64 of the stored argon2id hash; null for a user without a "
            "password, or whose imported hash was not yet replaced at a sign-in"
        },
    )


class UsernameSchema(OutputSchema):
    username = ma.fields.String()


class MeSchema(OutputSchema):
    username = ma.fields.String(allow_none=True)
    permissions = ma.fields.List(ma.fields.Nested(PolicySchema), attribute="policies")


class MessageSchema(OutputSchema):
    message = ma.fields.String()
