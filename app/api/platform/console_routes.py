"""Routes of the platform surface for console members (issue 28): the root key or a
tenant key holding `manage:console`. Another tenant's user or key answers 404."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal, root_or_tenant_key
from app.api.platform import blp
from app.api.platform.console_schemas import ConsoleMemberSchema, GrantConsoleMemberSchema
from app.console import service as console_service
from app.console.models import ConsoleMember

SCOPE = "manage:console"
MEMBERS = "/tenants/<tenant_id>/console-members"


@blp.route(MEMBERS, methods=["POST"])
@root_or_tenant_key(SCOPE)
@blp.arguments(GrantConsoleMemberSchema)
@blp.response(201, ConsoleMemberSchema)
def grant_console_member(body: dict[str, Any], tenant_id: str) -> ConsoleMember:
    """Give a user of the tenant a console role (or change it)"""
    return console_service.grant_member(tenant_id=tenant_id, actor=current_principal(), **body)


@blp.route(MEMBERS, methods=["GET"])
@root_or_tenant_key(SCOPE)
@blp.response(200, ConsoleMemberSchema(many=True))
def list_console_members(tenant_id: str) -> list[ConsoleMember]:
    """List the tenant's console members"""
    return console_service.list_members(tenant_id=tenant_id)


@blp.route(MEMBERS + "/<user_id>", methods=["DELETE"])
@root_or_tenant_key(SCOPE)
@blp.response(204)
def revoke_console_member(tenant_id: str, user_id: str) -> None:
    """Take a user's console role away (effective on the member's next request)"""
    console_service.revoke_member(tenant_id=tenant_id, user_id=user_id, actor=current_principal())
