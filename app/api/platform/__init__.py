"""The platform surface: tenants and API keys (root key), registered applications (root
key or `manage:applications`), webhooks (root key or `manage:webhooks`), console members
(root key or `manage:console`), audit events and their CSV export, delivery health, health
and readiness."""

from app.core.errors import DefaultErrorSchema as ErrorSchema
from app.core.errors import render_default as render_error
from app.core.smorest import Blueprint

blp = Blueprint(
    "platform",
    __name__,
    description="Tenants, API keys, applications, health",
    error_schema=ErrorSchema,
)

from app.api.platform import (  # noqa: E402,F401  (registers routes)
    application_routes,
    console_routes,
    delivery_routes,
    routes,
    webhook_routes,
)

__all__ = ["ErrorSchema", "blp", "render_error"]
