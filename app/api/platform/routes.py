"""Routes of the platform surface: tenants and their API keys, liveness, readiness and
metrics."""

from __future__ import annotations

from typing import Any

from flask import current_app, g

from app.api.audit_export import audit_csv
from app.api.auth import (
    client_ip,
    current_principal,
    public,
    requires,
    root_only,
    root_only_in_path_tenant,
)
from app.api.platform import blp
from app.api.platform.schemas import (
    ApiKeySchema,
    AuditExportQuerySchema,
    AuditPageSchema,
    AuditQuerySchema,
    CreateApiKeySchema,
    CreateTenantSchema,
    HealthSchema,
    IssuedApiKeySchema,
    PatchTenantSchema,
    TenantPageSchema,
    TenantQuerySchema,
    TenantSchema,
)
from app.audit import service as audit_service
from app.core import health, metrics
from app.core.pagination import Page
from app.tenants import service as tenant_service
from app.tenants.models import ApiKey, Tenant


def _tenant_view(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "name": tenant.name,
        "settings": tenant_service.tenant_settings(tenant),
        "created_at": tenant.created_at,
    }


@blp.route("/tenants", methods=["POST"])
@root_only
@blp.arguments(CreateTenantSchema)
@blp.response(201, TenantSchema)
def create_tenant(body: dict[str, Any]) -> dict[str, Any]:
    """Create a tenant"""
    return _tenant_view(
        tenant_service.create_tenant(name=body["name"], settings=body.get("settings"))
    )


@blp.route("/tenants", methods=["GET"])
@root_only
@blp.arguments(TenantQuerySchema, location="query")
@blp.response(200, TenantPageSchema)
def list_tenants(query: dict[str, Any]) -> Page[dict[str, Any]]:
    """List tenants, oldest first (keyset paged: limit, cursor)"""
    page = tenant_service.list_tenants(**query)
    return Page([_tenant_view(tenant) for tenant in page.items], page.next_cursor)


@blp.route("/tenants/<tenant_id>", methods=["DELETE"])
@root_only_in_path_tenant
@blp.response(204)
@blp.errors(404)
def delete_tenant(tenant_id: str) -> None:
    """Delete a tenant with its users, keys, secrets and every other row it owns"""
    tenant_service.delete_tenant(
        tenant_id=tenant_id,
        actor=g.principal.label,
        ip=client_ip(),
        batch_size=current_app.config["CLEANUP_BATCH_SIZE"],
    )


@blp.route("/tenants/<tenant_id>", methods=["GET"])
@root_only
@blp.response(200, TenantSchema)
def get_tenant(tenant_id: str) -> dict[str, Any]:
    """Get a tenant"""
    return _tenant_view(tenant_service.get_tenant(tenant_id))


@blp.route("/tenants/<tenant_id>", methods=["PATCH"])
@root_only_in_path_tenant
@blp.arguments(PatchTenantSchema)
@blp.response(200, TenantSchema)
def patch_tenant(body: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    """Rename a tenant or merge its settings (a change of a setting is audited
    `tenant.settings_changed`)"""
    tenant = tenant_service.update_tenant(
        tenant_id=tenant_id,
        name=body.get("name"),
        settings=body.get("settings"),
        actor=current_principal(),
    )
    return _tenant_view(tenant)


@blp.route("/tenants/<tenant_id>/api-keys", methods=["POST"])
@root_only_in_path_tenant
@blp.arguments(CreateApiKeySchema)
@blp.response(201, IssuedApiKeySchema)
def create_api_key(body: dict[str, Any], tenant_id: str) -> tenant_service.IssuedKey:
    """Create an API key (the key is shown only in this answer)"""
    return tenant_service.issue_api_key(
        tenant_id=tenant_id,
        name=body.get("name"),
        scopes=body.get("scopes"),
        actor=current_principal(),
    )


@blp.route("/tenants/<tenant_id>/api-keys", methods=["GET"])
@root_only_in_path_tenant
@blp.response(200, ApiKeySchema(many=True))
def list_api_keys(tenant_id: str) -> list[ApiKey]:
    """List a tenant's API keys"""
    return tenant_service.list_api_keys(tenant_id=tenant_id)


@blp.route("/tenants/<tenant_id>/api-keys/<key_id>", methods=["DELETE"])
@root_only_in_path_tenant
@blp.response(204)
def revoke_api_key(tenant_id: str, key_id: str) -> None:
    """Revoke an API key"""
    tenant_service.revoke_api_key(tenant_id=tenant_id, key_id=key_id, actor=current_principal())


@blp.route("/audit-events", methods=["GET"])
@requires("read:audit", user_arg=None)
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditPageSchema)
def list_audit_events(query: dict[str, Any]) -> Page[Any]:
    """List the tenant's audit events, newest first (filter by user_id, action, actor, time)"""
    return audit_service.list_events(**query)


@blp.route("/audit-events.csv", methods=["GET"])
@requires("read:audit", user_arg=None)
@blp.arguments(AuditExportQuerySchema, location="query")
@blp.response(
    200,
    {"type": "string"},
    content_type="text/csv; charset=utf-8",
    description="The filtered events, newest first, `limit` of them (at most 10,000); "
    "`X-Next-Cursor` (when present) is the `cursor` that continues",
    headers={"X-Next-Cursor": {"schema": {"type": "string"}, "description": "more follow"}},
)
def export_audit_events(query: dict[str, Any]) -> tuple[str, int, dict[str, str]]:
    """Export the tenant's audit events as CSV (the same filters as the list)"""
    text, headers = audit_csv(query)
    return text, 200, headers


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthSchema)
def healthz() -> dict[str, Any]:
    """Report that the process is alive"""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@public
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="The database or the broker is down")
def readyz() -> tuple[dict[str, Any], int]:
    """Report whether the database and the broker can be reached (503 when not)"""
    checks = health.readiness()
    ready = all(value in ("ok", "eager") for value in checks.values())
    return {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503


@blp.route("/metrics", methods=["GET"])
@public
@blp.response(
    200,
    {"type": "string"},
    content_type=metrics.CONTENT_TYPE,
    description="Prometheus' text exposition format",
)
def metrics_page() -> bytes:
    """Prometheus metrics: requests, latency, sign-ins, mail deliveries, Celery tasks"""
    return metrics.exposition()
