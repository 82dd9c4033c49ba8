"""flask-smorest subclasses: 400 (not 422) for validation errors, and error rendering
left to core.errors so every surface answers in its own shape.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from webargs.flaskparser import FlaskParser


class Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()


class Api(flask_smorest.Api):
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
