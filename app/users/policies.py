"""Permission policies of a user (`{resource, resource_type, type}`), and the directory's
view of users: by username, with policies, listed in pages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from app.core.db import db
from app.core.errors import Invalid, NotFound
from app.core.pagination import Page, paginate_by_creation
from app.core.tenancy import Principal
from app.users import service as user_service
from app.users.models import Policy, User

POLICY_TYPES = ("read", "write", "admin")
MAX_POLICIES = 100


def check_policies(policies: list[dict[str, Any]]) -> None:
    """Invalid unless every policy has a known type and a non-empty resource and type."""
    if len(policies) > MAX_POLICIES:
        raise Invalid(f"At most {MAX_POLICIES} policies", code="too_many_policies")
    for index, policy in enumerate(policies):
        if policy.get("type") not in POLICY_TYPES:
            raise Invalid(
                f"Policy {index}: type must be one of {', '.join(POLICY_TYPES)}",
                code="invalid_policy",
            )
        for key in ("resource", "resource_type"):
            value = policy.get(key)
            if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
                raise Invalid(
                    f"Policy {index}: {key} must be a non-empty string without spaces",
                    code="invalid_policy",
                )


def replace_policies(*, user: User, policies: list[dict[str, Any]]) -> list[Policy]:
    """Make `policies` the user's whole policy list, atomically: concurrent replacements
    apply one after the other (the last one wins), never merged; Invalid."""
    check_policies(policies)
    user_service.lock_user(user)
    db.session.execute(
        delete(Policy)
        .where(Policy.tenant_id == user.tenant_id, Policy.user_id == user.id)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(user, ["policies"])
    for p in policies:
        db.session.add(
            Policy(
                tenant_id=user.tenant_id,
                user_id=user.id,
                resource=p["resource"],
                resource_type=p["resource_type"],
                type=p["type"],
            )
        )
    user_service.scopes_changed(user)
    db.session.flush()
    db.session.expire(user, ["policies"])
    return user.policies


def policy_scopes(user: User) -> list[str]:
    """A scope per policy (`read:table:orders`), so access tokens carry the permissions."""
    return [f"{p.type}:{p.resource_type}:{p.resource}" for p in user.policies]


def get_by_username(username: str) -> User:
    """The user with this username (case-insensitive); NotFound."""
    user = user_service.find_by_username(username)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    return user


def create_directory_user(
    *, actor: Principal, username: str, password: str, policies: list[dict[str, Any]]
) -> User:
    """A username/password user with initial policies; Invalid or Conflict."""
    check_policies(policies)
    user = user_service.create_user(username=username, password=password, actor=actor)
    replace_policies(user=user, policies=policies)
    return user


def list_directory_users(*, limit: int | None, cursor: str | None) -> Page[User]:
    """The users that have a username, oldest first, in keyset pages."""
    return paginate_by_creation(
        select(User).where(User.username.is_not(None)),
        created_col=User.created_at,
        id_col=User.id,
        limit=limit,
        cursor=cursor,
    )
