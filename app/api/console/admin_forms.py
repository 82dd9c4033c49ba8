"""Form plumbing of the console's admin pages (applications, API keys, webhooks,
connections): a posted form loaded by a marshmallow schema, with checkbox groups as
lists and one-per-line text areas split; the posted values kept to show the form again
after a refusal; and times as the pages print them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask import request

from app.core.errors import Invalid


def split_lines(text: str) -> list[str]:
    """The non-blank lines of a text area, stripped (one URI or origin per line)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def posted(*, multi: Iterable[str] = ()) -> dict[str, Any]:
    """The posted form as plain values, to fill the form again after a refusal: a list
    for each field in `multi` (checkboxes), the text for the others (never the CSRF
    token, never a field named like a secret)."""
    names = set(multi)
    return {
        key: request.form.getlist(key) if key in names else request.form.get(key, "")
        for key in request.form
        if key != "csrf_token" and "secret" not in key
    } | {name: request.form.getlist(name) for name in names}


def _flat(messages: Any) -> list[str]:
    """A field's messages as a list of strings (a list field's per-item dicts flattened)."""
    if isinstance(messages, dict):
        return [text for value in messages.values() for text in _flat(value)]
    if isinstance(messages, list):
        return [text for value in messages for text in _flat(value)]
    return [str(messages)]


def read_form(
    schema: ma.Schema,
    message: str,
    *,
    multi: Iterable[str] = (),
    lines: Iterable[str] = (),
) -> dict[str, Any]:
    """The posted form as `schema` loads it: fields in `multi` as lists of their values,
    fields in `lines` split into lines. Invalid `invalid_form` with `message` and each
    field's messages (flattened, so each shows next to its field) when it does not load."""
    multi, lines = set(multi), set(lines)
    data: dict[str, Any] = {}
    for key in request.form:
        if key == "csrf_token":
            continue
        if key in multi:
            data[key] = request.form.getlist(key)
        elif key in lines:
            data[key] = split_lines(request.form.get(key, ""))
        else:
            data[key] = request.form.get(key, "")
    try:
        return schema.load(data)
    except ma.ValidationError as exc:
        fields = {name: _flat(value) for name, value in exc.normalized_messages().items()}
        raise Invalid(message, code="invalid_form", fields=fields) from exc


def stamp(at: datetime | None) -> str:
    """A time as the console's tables print it; a dash for none."""
    return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "—"


class FormSchema(ma.Schema):
    """A console form's shape: fields it does not name (the submit button) are ignored."""

    class Meta:
        unknown = ma.EXCLUDE
