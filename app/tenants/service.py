"""Tenant life cycle and settings, API key issue/revoke, and API key authentication.

Functions on a tenant's rows run in that tenant's scope, entered by the edge (the platform
routes' decorators, the CLI). An API key is presented without its tenant, so its look-up
by id goes through core's one cross-tenant look-up (`find_by_global_id`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select, tuple_, update

from app.audit import service as audit_service
from app.core import lastseen, security
from app.core.db import db, utcnow
from app.core.errors import Invalid, NotFound, Unauthenticated
from app.core.pagination import Page, paginate_by_creation
from app.core.scopes import unknown_key_scopes, unknown_scope_message
from app.core.tenancy import Principal, find_by_global_id
from app.tenants.models import ApiKey, Tenant

KEY_PREFIX = "gh_"

SETTINGS_FIELDS = (
    "allow_user_token_management",
    "email_from",
    "password_reset_hosts",
    "password_min_length",
    "weak_password_hashes",
    "access_token_ttl",
    "refresh_token_ttl",
    "signup_enabled",
    "signup_fields",
    "mfa_required",
    "console_require_mfa",
    "branding",
)
# password_policy's keys and the columns that hold them (password_min_length is also a
# setting of its own, from before the policy).
PASSWORD_POLICY_FIELDS = {
    "min_length": "password_min_length",
    "block_common": "password_block_common",
}
BRANDING_FIELDS = ("display_name", "logo_url", "primary_color", "support_url")


def create_tenant(*, name: str, settings: dict[str, Any] | None = None) -> Tenant:
    """Create a tenant with `settings` applied over the defaults."""
    tenant = Tenant(
        id=security.random_hex(16),
        name=name,
        allow_user_token_management=False,
        password_reset_hosts=[],
        password_min_length=8,
        weak_password_hashes="accept",
        password_block_common=True,
        signup_enabled=False,
        signup_fields=[],
        mfa_required=False,
        console_require_mfa=False,
        branding={},
    )
    _apply_settings(tenant, settings or {})
    db.session.add(tenant)
    db.session.flush()
    return tenant


def get_tenant(tenant_id: str) -> Tenant:
    """The tenant with this id; NotFound otherwise."""
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("Tenant not found", code="tenant_not_found")
    return tenant


def find_tenant(tenant_id: str) -> Tenant | None:
    return db.session.get(Tenant, tenant_id)


def find_tenant_by_name(name: str) -> Tenant | None:
    return db.session.scalar(select(Tenant).where(Tenant.name == name).order_by(Tenant.created_at))


def list_tenants(*, limit: int | None = None, cursor: str | None = None) -> Page[Tenant]:
    """A page of tenants, oldest first."""
    return paginate_by_creation(
        select(Tenant), created_col=Tenant.created_at, id_col=Tenant.id, limit=limit, cursor=cursor
    )


def _owned_tables() -> list[Any]:
    """Every table whose rows belong to a tenant, rows that point at others first."""
    return [
        t for t in reversed(db.metadata.sorted_tables) if "tenant_id" in t.c and t.name != "tenant"
    ]


def delete_tenant(
    *,
    tenant_id: str,
    actor: str,
    ip: str | None,
    batch_size: int,
    after_batch: Callable[[], None] = lambda: None,
) -> dict[str, int]:
    """Delete a tenant with everything it owns, table by table in batches of `batch_size`
    rows (`after_batch()` runs after each: the CLI commits there, so a big tenant goes
    in short transactions and a stopped run resumes). The `tenant.deleted` platform event
    outlives it (the tenant's own audit events go with it). Runs in the tenant's scope (the
    statements name the tenant's rows by `tenant_id` themselves). NotFound; {table: rows}."""
    tenant = get_tenant(tenant_id)
    name = tenant.name
    deleted: dict[str, int] = {}
    for table in _owned_tables():
        pk = tuple(table.primary_key.columns)
        doomed = select(*pk).where(table.c.tenant_id == tenant_id).limit(batch_size)
        while True:
            count = db.session.execute(table.delete().where(tuple_(*pk).in_(doomed))).rowcount
            deleted[table.name] = deleted.get(table.name, 0) + count
            after_batch()
            if count < batch_size:
                break
    db.session.delete(get_tenant(tenant_id))
    audit_service.record_platform_event(
        action="tenant.deleted",
        actor=actor,
        target=tenant_id,
        ip=ip,
        data={"name": name, "rows": {t: n for t, n in deleted.items() if n}},
    )
    db.session.flush()
    return deleted


def update_tenant(
    *,
    tenant_id: str,
    name: str | None = None,
    settings: dict[str, Any] | None = None,
    actor: Principal | None = None,
) -> Tenant:
    """Rename a tenant and/or merge `settings` into its settings; NotFound. With an
    `actor` (a caller acting in the tenant's scope: the platform API, the console), a
    change is audited as `tenant.settings_changed` naming the settings whose value
    changed."""
    tenant = get_tenant(tenant_id)
    before = tenant_settings(tenant) if actor is not None else {}
    if name is not None:
        tenant.name = name
    _apply_settings(tenant, settings or {})
    db.session.flush()
    if actor is not None:
        after = tenant_settings(tenant)
        changed = sorted(key for key in after if after[key] != before.get(key))
        if changed:
            audit_service.record(
                action="tenant.settings_changed",
                actor=actor.label,
                target=tenant.id,
                ip=actor.ip,
                data={"changed": changed},
            )
    return tenant


def _apply_settings(tenant: Tenant, settings: dict[str, Any]) -> None:
    for key in SETTINGS_FIELDS:
        if key in settings and key != "branding":
            setattr(tenant, key, settings[key])
    for key, column in PASSWORD_POLICY_FIELDS.items():
        if key in (settings.get("password_policy") or {}):
            setattr(tenant, column, settings["password_policy"][key])
    if settings.get("branding") is not None:
        # Merged: a PATCH of one key keeps the others; a key set to null is removed.
        merged = {**(tenant.branding or {}), **settings["branding"]}
        tenant.branding = {k: v for k, v in merged.items() if k in BRANDING_FIELDS and v}
    if "postmark_server_token" in settings:
        token = settings["postmark_server_token"]
        tenant.postmark_server_token_encrypted = (
            security.keyring().encrypt(token.encode(), postmark_token_associated_data(tenant))
            if token
            else None
        )


def postmark_token_associated_data(tenant: Tenant) -> bytes:
    """Binds the encrypted Postmark token to its tenant row."""
    return tenant.id.encode()


def tenant_settings(tenant: Tenant) -> dict[str, Any]:
    """The readable settings; the Postmark token is write-only, shown only as set or not."""
    settings = {key: getattr(tenant, key) for key in SETTINGS_FIELDS}
    settings["password_policy"] = {
        key: getattr(tenant, column) for key, column in PASSWORD_POLICY_FIELDS.items()
    }
    settings["branding"] = {key: (tenant.branding or {}).get(key) for key in BRANDING_FIELDS}
    settings["postmark_server_token_set"] = tenant.postmark_server_token_encrypted is not None
    return settings


def postmark_server_token(tenant: Tenant) -> str | None:
    """The tenant's decrypted Postmark token, if it has one."""
    if not tenant.postmark_server_token_encrypted:
        return None
    ring = security.keyring()
    return ring.decrypt(
        tenant.postmark_server_token_encrypted, postmark_token_associated_data(tenant)
    ).decode()


@dataclass
class IssuedKey:
    """A new key row plus the raw key, which exists only in this object."""

    api_key: ApiKey
    raw_key: str


def issue_api_key(
    *,
    tenant_id: str,
    name: str | None = None,
    scopes: list[str] | None = None,
    actor: Principal | None = None,
) -> IssuedKey:
    """Create an API key for a tenant (the tenant in scope); the raw key is returned once
    and never stored; audited `api_key.created`. Invalid `unknown_scope` for a scope
    outside the catalogue; NotFound."""
    unknown = unknown_key_scopes(scopes or [])
    if unknown:
        raise Invalid(unknown_scope_message(unknown[0]), code="unknown_scope")
    get_tenant(tenant_id)
    key_id = security.random_hex(8)
    raw_key = f"{KEY_PREFIX}{key_id}_{security.random_token(32)}"
    api_key = ApiKey(
        id=key_id,
        tenant_id=tenant_id,
        name=name,
        key_hash=security.sha256_hex(raw_key),
        scopes=sorted(set(scopes)) if scopes else ["*"],
        created_at=utcnow(),
    )
    db.session.add(api_key)
    db.session.flush()
    _audit_key("api_key.created", api_key, actor)
    return IssuedKey(api_key, raw_key)


def list_api_keys(*, tenant_id: str) -> list[ApiKey]:
    """Every key of the tenant (the tenant in scope), revoked ones included, oldest first;
    NotFound."""
    get_tenant(tenant_id)
    return list(db.session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def get_api_key(*, tenant_id: str, key_id: str) -> ApiKey:
    """A key of the tenant in scope, revoked or not; NotFound `api_key_not_found` (also
    for another tenant's key) or `tenant_not_found`."""
    get_tenant(tenant_id)
    api_key = db.session.scalar(select(ApiKey).where(ApiKey.id == key_id))
    if api_key is None:
        raise NotFound("API key not found", code="api_key_not_found")
    return api_key


def revoke_api_key(*, tenant_id: str, key_id: str, actor: Principal | None = None) -> None:
    """Revoke a key of the tenant in scope (idempotent: audited `api_key.revoked` the first
    time only); NotFound for an unknown key or tenant."""
    api_key = get_api_key(tenant_id=tenant_id, key_id=key_id)
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        db.session.flush()
        _audit_key("api_key.revoked", api_key, actor)


def _audit_key(action: str, api_key: ApiKey, actor: Principal | None) -> None:
    audit_service.record(
        action=action,
        actor=actor.label if actor else "system",
        target=api_key.id,
        ip=actor.ip if actor else None,
        data={"name": api_key.name, "scopes": list(api_key.scopes)},
    )


def get_api_key_all_tenants(key_id: str) -> ApiKey:
    """The key with this id, whichever tenant holds it (the operator CLI names a key by its
    id only; the caller then acts in `api_key.tenant_id`); NotFound."""
    api_key = find_by_global_id(ApiKey.id, key_id)
    if api_key is None:
        raise NotFound("API key not found", code="api_key_not_found")
    return api_key


def find_live_api_key(key_id: str) -> ApiKey | None:
    """The unrevoked key with this id, in any tenant (its tenant is checked by the caller)."""
    api_key = find_by_global_id(ApiKey.id, key_id)
    return api_key if api_key is not None and api_key.revoked_at is None else None


def looks_like_api_key(raw: str) -> bool:
    """True when `raw` has an API key's form (or is the configured root key)."""
    return raw.startswith(KEY_PREFIX) or is_root_key(raw)


def is_root_key(raw: str) -> bool:
    root = current_app.config.get("ROOT_API_KEY") or ""
    return bool(root) and security.constant_time_equals(
        security.sha256_hex(raw), security.sha256_hex(root)
    )


def authenticate_api_key(raw: str) -> ApiKey:
    """The live key matching `raw` (hash compared in constant time); Unauthenticated."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or f"{parts[0]}_" != KEY_PREFIX:
        raise Unauthenticated("The API key is not valid", code="invalid_api_key")
    # Keys are presented without their tenant: the key names it (the caller then acts there).
    api_key = find_by_global_id(ApiKey.id, parts[1])
    expected = api_key.key_hash if api_key is not None else security.sha256_hex("")
    matches = security.constant_time_equals(security.sha256_hex(raw), expected)
    if api_key is None or not matches or api_key.revoked_at is not None:
        raise Unauthenticated("The API key is not valid", code="invalid_api_key")
    return api_key


def record_key_use_by_id(key_id: str) -> None:
    """Note a key's use: buffered in Redis like user activity (no database write per
    request); embedded mode writes through at most once a minute."""
    if lastseen.record("api_key", key_id):
        _write_key_use([(key_id, utcnow())])


def flush_key_usage() -> int:
    """Move buffered key use into `last_used_at`."""
    rows = [
        (key_id, datetime.fromtimestamp(at, UTC))
        for key_id, at in lastseen.drain("api_key").items()
    ]
    _write_key_use(rows)
    return len(rows)


def _write_key_use(rows: list[tuple[str, datetime]]) -> None:
    if not rows:
        return
    table = ApiKey.__table__
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("k"),
            (table.c.last_used_at.is_(None)) | (table.c.last_used_at < bindparam("at")),
        )
        .values(last_used_at=bindparam("at"))
    )
    db.session.execute(statement, [{"k": k, "at": at} for k, at in rows])
