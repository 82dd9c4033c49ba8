"""Routes of the platform surface for registered applications (OAuth clients): the root
key or a tenant key holding `manage:applications`."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal, root_or_tenant_key
from app.api.platform import blp
from app.api.platform.application_schemas import (
    ApplicationSchema,
    CreateApplicationSchema,
    IssuedApplicationSchema,
    PatchApplicationSchema,
)
from app.applications import service as application_service
from app.applications.models import Application

SCOPE = "manage:applications"


@blp.route("/tenants/<tenant_id>/applications", methods=["POST"])
@root_or_tenant_key(SCOPE)
@blp.arguments(CreateApplicationSchema)
@blp.response(201, IssuedApplicationSchema)
def create_application(
    body: dict[str, Any], tenant_id: str
) -> application_service.IssuedApplication:
    """Register an application (a confidential app's secret is shown only in this answer)"""
    return application_service.create_application(
        tenant_id=tenant_id, actor=current_principal(), **body
    )


@blp.route("/tenants/<tenant_id>/applications", methods=["GET"])
@root_or_tenant_key(SCOPE)
@blp.response(200, ApplicationSchema(many=True))
def list_applications(tenant_id: str) -> list[Application]:
    """List a tenant's applications"""
    return application_service.list_applications(tenant_id=tenant_id)


@blp.route("/tenants/<tenant_id>/applications/<client_id>", methods=["GET"])
@root_or_tenant_key(SCOPE)
@blp.response(200, ApplicationSchema)
def get_application(tenant_id: str, client_id: str) -> Application:
    """Get an application"""
    return application_service.get_application(tenant_id=tenant_id, client_id=client_id)


@blp.route("/tenants/<tenant_id>/applications/<client_id>", methods=["PATCH"])
@root_or_tenant_key(SCOPE)
@blp.arguments(PatchApplicationSchema)
@blp.response(200, ApplicationSchema)
def patch_application(body: dict[str, Any], tenant_id: str, client_id: str) -> Application:
    """Change an application's name, redirect URIs, allowed origins, logout URIs or scopes"""
    return application_service.update_application(
        tenant_id=tenant_id, client_id=client_id, fields=body
    )


@blp.route("/tenants/<tenant_id>/applications/<client_id>/rotate-secret", methods=["POST"])
@root_or_tenant_key(SCOPE)
@blp.response(200, IssuedApplicationSchema)
@blp.errors(409)
def rotate_application_secret(
    tenant_id: str, client_id: str
) -> application_service.IssuedApplication:
    """Rotate a confidential application's client secret (the new one is shown only here)"""
    return application_service.rotate_secret(
        tenant_id=tenant_id, client_id=client_id, actor=current_principal()
    )


@blp.route("/tenants/<tenant_id>/applications/<client_id>", methods=["DELETE"])
@root_or_tenant_key(SCOPE)
@blp.response(204)
def delete_application(tenant_id: str, client_id: str) -> None:
    """Delete an application and end every session it started"""
    application_service.delete_application(
        tenant_id=tenant_id, client_id=client_id, actor=current_principal()
    )
