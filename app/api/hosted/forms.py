"""The hosted pages' form bodies: the shapes every sign-in form shares (login, code,
password) and the one loader that turns a refused form into Invalid `invalid_form`, which
the page shows above the form again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from flask import request

from app.core.errors import Invalid


class LoginForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))


class CodeForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    # A TOTP code (6 digits) or a recovery code (`xxxxx-xxxxx`, spaces allowed).
    code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=32))


class PasswordForm(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))


def load_form(
    schema: ma.Schema, message: str, data: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The posted form (or `data`, a form's values already gathered: a query's, a
    multi-valued form's) as `schema` loads it; Invalid `invalid_form` (with `message` and
    the fields' messages) when it does not."""
    try:
        return schema.load(request.form.to_dict() if data is None else data)
    except ma.ValidationError as exc:
        raise Invalid(message, code="invalid_form", fields=exc.normalized_messages()) from exc
