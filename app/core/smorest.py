"""flask-smorest subclasses: 400 (not 422) for validation errors, and error rendering
left to core.errors so every surface answers in its own shape.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
import marshmallow as ma
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask
from webargs.flaskparser import FlaskParser


class Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()


def schema_name(schema: type[ma.Schema]) -> str:
    """OpenAPI component names carry the surface (`directory.Policy`), since several
    surfaces present the same object in their own shape."""
    resolved = resolve_schema_cls(schema)
    schema_cls = resolved[0] if isinstance(resolved, list) else resolved
    name = schema_cls.__name__.removesuffix("Schema") or schema_cls.__name__
    parts = schema_cls.__module__.split(".")
    surface = parts[2] if len(parts) > 3 and parts[:2] == ["app", "api"] else "common"
    return f"{surface}.{name}"


class Api(flask_smorest.Api):
    def __init__(self, app: Flask | None = None) -> None:
        super().__init__(
            app,
            spec_kwargs={"marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name)},
        )

    def _register_error_handlers(self) -> None:
        """Errors are rendered by core.errors.register_error_handlers, per surface."""

    def register_security_schemes(self) -> None:
        """Describe the credentials every surface accepts in the OpenAPI document."""
        schemes: dict[str, dict[str, Any]] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-APIKEY"},
            "ApiKeyLower": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
        for name, scheme in schemes.items():
            self.spec.components.security_scheme(name, scheme)
