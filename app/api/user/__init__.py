"""The user surface (the user API): `/user/...` with X-APIKEY + X-Tenant-ID or a bearer token."""

from app.core.errors import DefaultErrorSchema as ErrorSchema
from app.core.errors import render_default as render_error
from app.core.smorest import Blueprint

blp = Blueprint(
    "user",
    __name__,
    description="Users by id, profiles, secrets and properties",
    error_schema=ErrorSchema,
)

from app.api.user import property_routes, routes, secret_routes  # noqa: E402,F401

__all__ = ["ErrorSchema", "blp", "render_error"]
