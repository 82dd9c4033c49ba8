"""Users: create, look up, update and delete, with the invariants every surface shares
(id format, reserved and unique usernames, valid emails, the tenant's password policy).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import bindparam, select, update

from app.audit import service as audit_service
from app.core import lastseen
from app.core.db import add_unique, db, utcnow
from app.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from app.core.tenancy import Principal, current_tenant_id
from app.tenants import service as tenant_service
from app.users import passwords, read_model
from app.users.models import User

USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9._@|:-]{1,128}\Z")
RESERVED_USERNAMES = frozenset({"me", "current", "profile"})
MAX_PASSWORD_LENGTH = 1024
MAX_EMAIL_MATCHES = 100
# Fields that decide an access token's scopes (see tokens.claims.user_scopes).
SCOPE_FIELDS = frozenset({"permissions_group", "custom_scopes"})

# Attributes a caller may set directly; everything else has its own function.
PROFILE_FIELDS = frozenset(
    {
        "email_verified",
        "display_name",
        "first_name",
        "last_name",
        "nickname",
        "photo_url",
        "phone_number",
        "blocked",
        "permissions_group",
        "custom_scopes",
        "settings",
        "user_metadata",
        "app_metadata",
        "require_twofactor_auth",
        "device_token",
        "device_type",
    }
)


def check_user_id(user_id: str) -> str:
    """`user_id` if it has the allowed form; Invalid otherwise."""
    if not isinstance(user_id, str) or not USER_ID_PATTERN.fullmatch(user_id):
        raise Invalid(
            "A user id is 1-128 characters of A-Z a-z 0-9 . _ @ | : -",
            code="invalid_user_id",
            fields={"id": ["Invalid user id."]},
        )
    return user_id


def normalize_username(username: str) -> str:
    """The case-folded username; Invalid when reserved or malformed."""
    if not USER_ID_PATTERN.fullmatch(username):
        raise Invalid(
            "A username is 1-128 characters of A-Z a-z 0-9 . _ @ | : -",
            code="invalid_username",
            fields={"username": ["Invalid username."]},
        )
    folded = username.casefold()
    if folded in RESERVED_USERNAMES:
        raise Invalid(
            f"The username {username!r} is reserved",
            code="reserved_username",
            fields={"username": ["This username is reserved."]},
        )
    return folded


def normalize_email(email: str) -> str:
    """The address as given, after checking it is a valid address; Invalid otherwise."""
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise Invalid(
            "The email address is not valid",
            code="invalid_email",
            fields={"email": [str(exc)]},
        ) from exc
    return email


def check_password(password: str, *, chosen_on_page: bool = False) -> None:
    """Apply the current tenant's password policy; Invalid when it fails. A password a
    user chooses on the hosted pages (`chosen_on_page`: sign-up, reset, account page)
    must also be off the shipped list of common passwords when the policy says so
    (`password_too_common`); passwords set through the APIs keep the length rule only."""
    tenant = tenant_service.get_tenant(current_tenant_id())
    if len(password) < tenant.password_min_length:
        raise Invalid(
            f"The password must be at least {tenant.password_min_length} characters",
            code="password_too_short",
            fields={"password": ["Too short."]},
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise Invalid(
            f"The password must be at most {MAX_PASSWORD_LENGTH} characters",
            code="password_too_long",
            fields={"password": ["Too long."]},
        )
    if chosen_on_page and tenant.password_block_common and passwords.is_common(password):
        raise Invalid(
            "This password is one of the most common ones and easy to guess: choose another",
            code="password_too_common",
            fields={"password": ["Too common."]},
        )


def create_user(
    *,
    user_id: str | None = None,
    username: str | None = None,
    email: str | None = None,
    password: str | None = None,
    actor: Principal | None = None,
    **profile: Any,
) -> User:
    """Create a user in the current tenant (audited when an actor is given); Invalid, or
    Conflict on a taken id/username."""
    unknown = set(profile) - PROFILE_FIELDS
    if unknown:
        raise TypeError(f"unknown user fields: {sorted(unknown)}")
    user_id = check_user_id(user_id) if user_id is not None else uuid.uuid4().hex
    user = User(id=user_id, logins_count=0, version=1)
    _set_username(user, username)
    _set_email(user, email)
    if password is not None:
        check_password(password)
        passwords.set_password(user, password)
    user.custom_scopes, user.settings = [], []
    user.user_metadata, user.app_metadata = {}, {}
    for key, value in profile.items():
        setattr(user, key, value)
    if db.session.scalar(select(User.id).where(User.id == user_id)) is not None:
        raise Conflict("A user with this id already exists", code="user_exists")
    _check_username_free(user)
    _flush_unique(user)
    if actor is not None:
        audit_service.record(action="user.created", actor=actor.label, user_id=user.id, ip=actor.ip)
    return user


def _set_username(user: User, username: str | None) -> None:
    user.username = username
    user.username_normalized = normalize_username(username) if username is not None else None


def _set_email(user: User, email: str | None) -> None:
    user.email = normalize_email(email) if email is not None else None
    user.email_normalized = user.email.casefold() if user.email is not None else None


def _check_username_free(user: User) -> None:
    if user.username_normalized is None:
        return
    # Not autoflushed: flushing the new username first would hit the unique index as an
    # IntegrityError (a 500) before this check could answer 409.
    with db.session.no_autoflush:
        taken = db.session.scalar(
            select(User.id).where(
                User.username_normalized == user.username_normalized, User.id != user.id
            )
        )
    if taken is not None:
        raise Conflict("This username is taken", code="username_exists")


def _flush_unique(user: User) -> None:
    add_unique(user, Conflict("A user with this id or username already exists", code="user_exists"))


def get_user(user_id: str) -> User:
    """The user with this id in the current tenant; NotFound (also for other tenants)."""
    user = find_user(user_id)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    return user


def find_user(user_id: str) -> User | None:
    """The user with this id in the current tenant, or None (the primary key holds the
    tenant, so the identity map answers a second look-up without a query)."""
    return db.session.get(User, (current_tenant_id(), user_id))


def get_user_view(user_id: str, *, caller: Principal | None = None) -> read_model.UserView:
    """The user as a read-only view, for answers of requests that change nothing: the
    caller's own row as the bearer check read it, any other in one select; NotFound."""
    tenant_id = current_tenant_id()
    view = caller.user_view if caller is not None else None
    if view is None or view.id != user_id or view.tenant_id != tenant_id:
        view = read_model.load_view(tenant_id=tenant_id, user_id=user_id)
    if view is None:
        raise NotFound("User not found", code="user_not_found")
    return view


def find_by_username(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username_normalized == username.casefold()))


def find_by_email(email: str) -> list[User]:
    """Every user with this address (emails are not unique), oldest first."""
    return list(
        db.session.scalars(
            select(User)
            .where(User.email_normalized == email.casefold())
            .order_by(User.created_at, User.id)
            .limit(MAX_EMAIL_MATCHES)
        )
    )


def update_user(
    *, user: User, changes: dict[str, Any], actor: str | None, ip: str | None = None
) -> User:
    """Apply `changes` (profile fields, `username`, `email`) to `user`; Invalid or Conflict.
    A change of what the user's tokens may do ends the access tokens minted before it.
    Audited as `user.updated` by `actor` (the audit label) with the fields whose value
    changed; `actor=None` for a caller that records a more specific event itself."""
    unknown = set(changes) - PROFILE_FIELDS - {"username", "email"}
    if unknown:
        raise TypeError(f"unknown user fields: {sorted(unknown)}")
    changed = sorted(key for key in changes if changes[key] != getattr(user, key))
    if any(changes[key] != getattr(user, key) for key in changes.keys() & SCOPE_FIELDS):
        scopes_changed(user)
    if "username" in changes:
        _set_username(user, changes["username"])
        _check_username_free(user)
    if "email" in changes:
        _set_email(user, changes["email"])
    for key in changes.keys() & PROFILE_FIELDS:
        setattr(user, key, changes[key])
    _flush_unique(user)
    # Recorded once the row holds the change: the webhook body written with this event
    # shows the user as the change left it.
    if actor is not None and changed:
        audit_service.record(
            action="user.updated", actor=actor, user_id=user.id, ip=ip, data={"fields": changed}
        )
    return user


def scopes_changed(user: User) -> None:
    """What the user's tokens may do changed (group, custom scopes, policies): access
    tokens carry the scope version, so those minted before are refused on their next use
    (a refresh mints one with the new scopes)."""
    user.scope_version = (user.scope_version or 0) + 1


def lock_user(user: User) -> User:
    """Take the user's row lock for the rest of the transaction and reload the row, so
    read-modify-write changes (a policy list) of concurrent requests apply one after the
    other instead of merging."""
    return db.session.execute(
        select(User)
        .where(User.tenant_id == user.tenant_id, User.id == user.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()  # loading the row is what refreshes the instance


def check_recent_sign_in(*, actor: Principal, user: User) -> None:
    """A user changing one of its own credentials with an access token — password, email,
    second factor, linked identities, device keys (SPEC §8) — must have entered its
    password within REAUTH_MAX_AGE_SECONDS (OWASP ASVS V3.7.1): a stolen or refreshed
    token alone cannot take the account over. Every such service calls this one rule.
    API keys and administrators acting on others are not asked. Unauthenticated
    `reauthentication_required` otherwise."""
    if not (actor.is_user and actor.user_id == user.id):
        return
    max_age = current_app.config["REAUTH_MAX_AGE_SECONDS"]
    if actor.auth_time is not None and utcnow().timestamp() - actor.auth_time <= max_age:
        return
    raise Unauthenticated(
        f"Sign in again (password entered within {max_age} s) to change this",
        code="reauthentication_required",
    )


def delete_user(*, actor: Principal, user: User) -> None:
    """Delete a user and everything it owns (policies, identities, tokens, …); audited."""
    audit_service.record(action="user.deleted", actor=actor.label, user_id=user.id, ip=actor.ip)
    db.session.delete(user)
    db.session.flush()


def email_visible(*, actor: Principal, user: User) -> bool:
    """An unverified address is shown only to callers that may read any user."""
    return user.email_verified or actor.has("read:users")


def change_account_email(*, actor: Principal, user: User, changes: dict[str, Any]) -> User:
    """Apply `{email?, emailVerified?}` as the accounts surface allows: a user may change
    its own email (which becomes unverified) but may not mark it verified; Forbidden."""
    admin = actor.has("update:users")
    if "email_verified" in changes and not admin:
        raise Forbidden("Only an administrator may set emailVerified", code="forbidden_field")
    update: dict[str, Any] = {}
    if "email" in changes and changes["email"] != user.email:
        check_recent_sign_in(actor=actor, user=user)
        update["email"] = changes["email"]
        update["email_verified"] = False
    if "email_verified" in changes:
        update["email_verified"] = changes["email_verified"]
    if not update:
        return user
    return update_user(user=user, changes=update, actor=actor.label, ip=actor.ip)


def record_activity(*, tenant_id: str, user_id: str) -> None:
    """Note that a user made an authenticated request: one Redis write, no database
    write (embedded mode writes through at most once a minute per user)."""
    if lastseen.record("user", f"{tenant_id}:{user_id}"):
        _write_activity([(tenant_id, user_id, utcnow())])


def flush_activity() -> int:
    """Move buffered activity into `last_activity_at`, in one batched statement."""
    entries = lastseen.drain("user")
    rows = []
    for key, at in entries.items():
        tenant_id, _, user_id = key.partition(":")
        rows.append((tenant_id, user_id, datetime.fromtimestamp(at, UTC)))
    _write_activity(rows)
    return len(rows)


def _write_activity(rows: list[tuple[str, str, datetime]]) -> None:
    # A Core statement keyed by (tenant, id): it spans tenants by design, never moves a
    # timestamp backwards, and leaves version and updated_at alone (activity is no edit).
    if not rows:
        return
    table = User.__table__
    statement = (
        update(table)
        .where(
            table.c.tenant_id == bindparam("t"),
            table.c.id == bindparam("u"),
            (table.c.last_activity_at.is_(None)) | (table.c.last_activity_at < bindparam("at")),
        )
        .values(last_activity_at=bindparam("at"), updated_at=table.c.updated_at)
    )
    db.session.execute(statement, [{"t": t, "u": u, "at": at} for t, u, at in rows])
