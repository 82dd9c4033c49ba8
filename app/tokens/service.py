"""Sign-in grants and the tokens they issue: access and ID tokens (RS256 JWTs), refresh
tokens (opaque, hashed, rotated in families with reuse detection), revocation, and the
check of a bearer access token on every request.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.audit import service as audit_service
from app.core import security
from app.core.db import db, utcnow
from app.core.tenancy import Principal, all_tenants, tenant_scope
from app.tenants import service as tenant_service
from app.tenants.models import Tenant
from app.tokens import signing
from app.tokens.models import CustomTokenUse, RefreshToken
from app.users import policies as policy_service
from app.users import service as user_service
from app.users.models import User

REFRESH_PREFIX = "rt_"
CURRENT_USER_SCOPES = (
    "read:current_user",
    "update:current_user",
    "update:current_user_metadata",
    "create:current_user_metadata",
    "delete:current_user_metadata",
    "update:current_user_identities",
    "create:current_user_device_credentials",
    "delete:current_user_device_credentials",
    "read:current_user_secrets",
    "write:current_user_secrets",
    "read:current_user_properties",
    "write:current_user_properties",
)
ADMIN_SCOPES = (
    "read:users",
    "create:users",
    "update:users",
    "delete:users",
    "read:device_credentials",
    "create:device_credentials",
    "delete:device_credentials",
    "read:secrets",
    "write:secrets",
    "read:properties",
    "write:properties",
    "create:user_tokens",
    "read:audit",
)
ADMIN_GROUP = "admin"


@dataclass
class TokenSet:
    access_token: str
    expires_in: int
    scope: str
    id_token: str | None = None
    refresh_token: str | None = None
    user_id: str | None = None
    is_new_user: bool = False


def user_scopes(user: User) -> list[str]:
    """What a user's access token may do: its own data, custom scopes, admin powers."""
    scopes = list(CURRENT_USER_SCOPES)
    if user.permissions_group == ADMIN_GROUP:
        scopes += ADMIN_SCOPES
    scopes += [s for s in user.custom_scopes or [] if isinstance(s, str)]
    scopes += policy_service.policy_scopes(user)
    return list(dict.fromkeys(scopes))


def access_ttl(tenant: Tenant) -> int:
    return tenant.access_token_ttl or current_app.config["ACCESS_TOKEN_TTL"]


def _refresh_ttl(tenant: Tenant) -> int:
    return tenant.refresh_token_ttl or current_app.config["REFRESH_TOKEN_TTL"]


def timestamp(moment: datetime) -> float:
    # Millisecond precision (truncated), so a token made right after a password change is
    # not older than tokens_valid_after even within the same second.
    return math.floor(moment.timestamp() * 1000) / 1000


def _id_token(user: User, tenant: Tenant, now: datetime, ttl: int, auth_time: datetime) -> str:
    claims: dict[str, Any] = {
        "iss": current_app.config["ISSUER"],
        "sub": user.id,
        "aud": tenant.id,
        "tid": tenant.id,
        "iat": timestamp(now),
        "exp": int(now.timestamp()) + ttl,
        "auth_time": int(auth_time.timestamp()),
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.display_name or " ".join(p for p in (user.first_name, user.last_name) if p),
        "given_name": user.first_name,
        "family_name": user.last_name,
        "preferred_username": user.username,
        "picture": user.photo_url,
    }
    return signing.sign({k: v for k, v in claims.items() if v not in (None, "")})


def _new_refresh_token(
    user: User, tenant: Tenant, family_id: str, auth_time: datetime, now: datetime
) -> str:
    raw = f"{REFRESH_PREFIX}{tenant.id}_{security.random_token(32)}"
    db.session.add(
        RefreshToken(
            id=security.random_hex(16),
            tenant_id=tenant.id,
            token_hash=security.sha256_hex(raw),
            family_id=family_id,
            user_id=user.id,
            created_at=now,
            expires_at=now + timedelta(seconds=_refresh_ttl(tenant)),
            auth_time=auth_time,
        )
    )
    return raw


def issue_session(
    *, user: User, family_id: str | None = None, auth_time: datetime | None = None
) -> TokenSet:
    """Access, ID and refresh tokens for `user` (a new family unless one is given)."""
    tenant = tenant_service.get_tenant(user.tenant_id)
    now = utcnow()
    family_id = family_id or security.random_hex(16)
    auth_time = auth_time or now
    ttl = access_ttl(tenant)
    scope = " ".join(user_scopes(user))
    access = signing.sign(
        {
            "iss": current_app.config["ISSUER"],
            "sub": user.id,
            "aud": tenant.id,
            "tid": tenant.id,
            "scope": scope,
            "iat": timestamp(now),
            "exp": int(now.timestamp()) + ttl,
            "jti": uuid.uuid4().hex,
            "sid": family_id,
        }
    )
    return TokenSet(
        access_token=access,
        expires_in=ttl,
        scope=scope,
        id_token=_id_token(user, tenant, now, ttl, auth_time),
        refresh_token=_new_refresh_token(user, tenant, family_id, auth_time, now),
        user_id=user.id,
    )


def record_login(user: User, *, actor: str, ip: str | None, method: str) -> None:
    """Count a successful sign-in (in this transaction, so the next read shows it).

    An atomic `logins_count + 1` rather than a versioned row update: concurrent sign-ins of
    one user must both count, and a sign-in is no edit of the user (version, updated_at
    and so the ETag stay)."""
    now = utcnow()
    db.session.execute(
        update(User)
        .where(User.tenant_id == user.tenant_id, User.id == user.id)
        .values(logins_count=User.logins_count + 1, last_login_at=now, updated_at=User.updated_at)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(user, "logins_count", (user.logins_count or 0) + 1)
    set_committed_value(user, "last_login_at", now)
    audit_service.record(
        action="user.signed_in", actor=actor, user_id=user.id, ip=ip, data={"method": method}
    )


def revoke_user_sessions(*, user: User, keep_family: str | None = None) -> None:
    """Invalidate every access token issued so far and every refresh family, except the
    session `keep_family` (its tokens stay valid)."""
    user.tokens_valid_after = utcnow()
    user.kept_session_id = keep_family
    query = update(RefreshToken).where(
        RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None)
    )
    if keep_family is not None:
        query = query.where(RefreshToken.family_id != keep_family)
    db.session.execute(query.values(revoked_at=utcnow()))


def authenticate_access_token(raw: str) -> Principal:
    """The principal behind a bearer JWT; invalid_token when it is expired, forged, issued
    before the user's tokens_valid_after, or its user is blocked or gone."""
    claims = signing.verify(raw)
    if not isinstance(claims.get("scope"), str) or "jti" not in claims:
        raise signing.invalid_token("An ID token is not an access token")
    tenant_id = claims["tid"]
    scopes = frozenset(str(claims.get("scope", "")).split())
    if claims.get("gty") == "client-credentials":
        api_key = tenant_service.find_live_api_key(str(claims.get("azp", "")))
        if api_key is None or api_key.tenant_id != tenant_id:
            raise signing.invalid_token()
        return Principal(
            tenant_id=tenant_id, scopes=scopes, kind="api_key", credential_id=api_key.id
        )
    with tenant_scope(tenant_id):
        user = user_service.load_caller(str(claims["sub"]))
    if user is None or user.blocked:
        raise signing.invalid_token()
    # The identity map holds rows weakly: keep the caller's row for this unit of work, so
    # the view's look-up of the same user costs no second query.
    db.session.info["authenticated_user"] = user
    valid_after = user.tokens_valid_after
    kept = user.kept_session_id is not None and claims.get("sid") == user.kept_session_id
    if valid_after is not None and float(claims["iat"]) < timestamp(valid_after) and not kept:
        raise signing.invalid_token("The access token was revoked")
    return Principal(
        tenant_id=tenant_id,
        scopes=scopes,
        user_id=user.id,
        kind="user",
        credential_id=claims.get("sid"),
    )


def purge_expired(*, batch_size: int) -> int:
    """Delete up to `batch_size` expired refresh tokens and used custom-token ids (all
    tenants); how many rows went."""
    now = utcnow()
    removed = 0
    with all_tenants():
        for model in (RefreshToken, CustomTokenUse):
            doomed = (
                select(model.__table__.c[_pk(model)])
                .where(model.expires_at < now)
                .limit(batch_size)
            )
            removed += db.session.execute(
                delete(model)
                .where(model.__table__.c[_pk(model)].in_(doomed))
                .execution_options(synchronize_session=False)
            ).rowcount
    return removed


def _pk(model: type[Any]) -> str:
    return model.__mapper__.primary_key[0].key
