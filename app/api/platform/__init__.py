"""The platform surface: tenants and API keys (root key), health and readiness."""

from app.core.errors import DefaultErrorSchema as ErrorSchema
from app.core.errors import render_default as render_error
from app.core.smorest import Blueprint

blp = Blueprint(
    "platform", __name__, description="Tenants, API keys, health", error_schema=ErrorSchema
)

from app.api.platform import routes  # noqa: E402,F401  (registers the routes on blp)

__all__ = ["ErrorSchema", "blp", "render_error"]
