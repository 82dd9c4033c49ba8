"""Output schemas whose dump is compiled once: hot answers are still declared and
documented by their marshmallow schema (`@blp.response`), but dumping walks a plan made
from the schema's fields the first time instead of marshmallow's generic machinery.

The plan does what `Schema.dump` does, field by field — the same attribute look-up, the
same `dump_default`, the same `data_key`, each field's own `_serialize` — and takes a
shortcut only where marshmallow would return the value unchanged (a `str` for a String,
a `bool` for a Boolean, an `int` for an Integer, any value for Raw). A schema with dump
hooks, or a field that reads no attribute (Method, Function, Constant), dumps the
ordinary way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import marshmallow as ma
from marshmallow import utils

from app.api.fields import OutputSchema

MISSING = ma.missing
Plan = Callable[[Any], Any]
Convert = Callable[[Any, str, Any], Any]


def _get(obj: Any, key: str) -> Any:
    """marshmallow.utils.get_value for one plain key, without its generic detours."""
    if type(obj) is dict:
        try:
            return obj[key]
        except KeyError:
            return getattr(obj, key, MISSING)
    if not hasattr(obj, "__getitem__"):
        return getattr(obj, key, MISSING)
    return utils.get_value(obj, key, MISSING)


def _same_type(kind: type, field: ma.fields.Field) -> Convert:
    slow = field._serialize  # these fields print None as None and `kind` unchanged
    return lambda value, attr, obj: (
        value if value is None or type(value) is kind else slow(value, attr, obj)
    )


def _converter(field: ma.fields.Field) -> Convert:
    """How `field` turns an attribute value into output (its `_serialize`, or a shortcut
    that gives the same result)."""
    kind = type(field)
    if kind is ma.fields.Raw:
        return lambda value, attr, obj: value
    if kind is ma.fields.String:
        return _same_type(str, field)
    if kind is ma.fields.Boolean:
        return _same_type(bool, field)
    if kind is ma.fields.Integer and not field.as_string:
        return _same_type(int, field)
    if kind is ma.fields.Dict and field.key_field is None and field.value_field is None:
        return lambda value, attr, obj: None if value is None else dict(value)
    if kind is ma.fields.Nested:
        return _nested(field)
    if kind is ma.fields.List and type(field.inner) in (ma.fields.Nested, ma.fields.String):
        inner = _converter(field.inner)
        return lambda value, attr, obj: (
            None if value is None else [inner(each, attr, obj) for each in value]
        )
    return field._serialize


def _nested(field: ma.fields.Nested) -> Convert:
    schema = field.schema
    if schema.many or field.many or type(schema).dump not in _PLAIN_DUMPS:
        return field._serialize
    plan = compile_dump(schema)
    if plan is None:
        return field._serialize
    return lambda value, attr, obj: None if value is None else plan(value)


def compile_dump(schema: ma.Schema) -> Plan | None:
    """A function dumping one object as `schema.dump` would, or None when the schema
    needs marshmallow's own path (dump hooks, a custom `get_attribute`)."""
    if schema._hooks[ma.decorators.PRE_DUMP] or schema._hooks[ma.decorators.POST_DUMP]:
        return None
    if type(schema).get_attribute is not ma.Schema.get_attribute:
        return None
    accessor = schema.get_attribute
    # (output key, field name, attribute read, converter or None, dump_default or field)
    steps: list[tuple[str, str, str, Convert | None, Any]] = []
    for name, field in schema.dump_fields.items():
        key = field.data_key if field.data_key is not None else name
        source = field.attribute if field.attribute is not None else name
        if not field._CHECK_ATTRIBUTE or "." in source:
            steps.append((key, name, source, None, field))  # marshmallow does it all
        else:
            steps.append((key, name, source, _converter(field), field.dump_default))
    dict_class = schema.dict_class

    def dump(obj: Any) -> Any:
        out = dict_class()
        plain = not hasattr(obj, "__getitem__")  # attributes only: getattr says it all
        for key, name, source, convert, default in steps:
            if convert is None:
                value = default.serialize(name, obj, accessor=accessor)
                if value is not MISSING:
                    out[key] = value
                continue
            value = getattr(obj, source, MISSING) if plain else _get(obj, source)
            if value is MISSING:
                if default is MISSING:
                    continue
                value = default() if callable(default) else default
                if value is MISSING:
                    continue
            out[key] = convert(value, name, obj)
        return out

    return dump


class CompiledOutputSchema(OutputSchema):
    """An output schema that dumps through `compile_dump` (made on first use)."""

    _plan: Plan | None

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        try:
            plan = self._plan
        except AttributeError:
            plan = self._plan = compile_dump(self)
        if plan is None:
            return super().dump(obj, many=many)
        if (self.many if many is None else many) and obj is not None:
            return [plan(each) for each in obj]
        return plan(obj)


_PLAIN_DUMPS = (ma.Schema.dump, CompiledOutputSchema.dump)
