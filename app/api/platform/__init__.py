"""The platform surface: tenants and API keys (root key), registered applications (root
key or `manage:applications`), health and readiness."""

from app.core.errors import DefaultErrorSchema as ErrorSchema
from app.core.errors import render_default as render_error
from app.core.smorest import Blueprint

blp = Blueprint(
    "platform",
    __name__,
    description="Tenants, API keys, applications, health",
    error_schema=ErrorSchema,
)

from app.api.platform import application_routes, routes  # noqa: E402,F401  (registers routes)

__all__ = ["ErrorSchema", "blp", "render_error"]
