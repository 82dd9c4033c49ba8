"""Profile edits with the Management API's rules: metadata merged one level deep (`null`
removes a key), root fields replaced, blocking (audited `user.blocked`), and what a user
may change about itself (only its `user_metadata`)."""

from __future__ import annotations

import json
from typing import Any

from app.audit import service as audit_service
from app.core.db import db
from app.core.errors import Forbidden, Invalid
from app.core.tenancy import Principal
from app.users import service as user_service
from app.users.models import User

METADATA_FIELDS = ("user_metadata", "app_metadata")
MAX_METADATA_BYTES = 16 * 1024
# What a user acting on itself without `update:users` may change.
SELF_EDITABLE = frozenset({"user_metadata"})


def merge_metadata(current: dict[str, Any] | None, patch: dict[str, Any] | None) -> dict[str, Any]:
    """`patch` merged into `current` one level deep: a key set to None is removed, any
    other value replaces the old one whole; a None patch clears everything."""
    if patch is None:
        return {}
    merged = dict(current or {})
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _check_metadata_size(name: str, value: dict[str, Any]) -> None:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise Invalid(
            f"{name} is larger than {MAX_METADATA_BYTES} bytes",
            code="metadata_too_large",
            fields={name: [f"At most {MAX_METADATA_BYTES} bytes of JSON."]},
        )


def set_blocked(*, actor: Principal, user: User, blocked: bool) -> None:
    """Block or unblock a user (audited `user.blocked` either way). A blocked user cannot
    sign in and its tokens are refused on their next use; unblocking restores both, since
    nothing is revoked."""
    if user.blocked == blocked:
        return
    user.blocked = blocked
    audit_service.record(
        action="user.blocked",
        actor=actor.label,
        user_id=user.id,
        ip=actor.ip,
        data={"blocked": blocked},
    )


def create_user(
    *, actor: Principal, password: str | None = None, blocked: bool = False, **fields: Any
) -> User:
    """Create a user (`fields` as users.service.create_user takes them); Invalid, Conflict."""
    for name in METADATA_FIELDS:
        if fields.get(name) is not None:
            fields[name] = merge_metadata({}, fields[name])
            _check_metadata_size(name, fields[name])
        else:
            fields.pop(name, None)
    user = user_service.create_user(password=password, actor=actor, **fields)
    set_blocked(actor=actor, user=user, blocked=blocked)
    db.session.flush()
    return user


def check_self_edit(*, actor: Principal, fields: set[str]) -> None:
    """Forbidden when a caller without `update:users` (a user acting on itself) would
    change anything but its `user_metadata`."""
    if actor.has("update:users"):
        return
    refused = sorted(fields - SELF_EDITABLE)
    if refused:
        raise Forbidden(
            f"A user may change only its own user_metadata, not {', '.join(refused)}",
            code="forbidden_field",
        )


def update_user(*, actor: Principal, user: User, changes: dict[str, Any]) -> User:
    """Apply a Management API PATCH (no password: credentials.service does that):
    metadata merged, other fields replaced, `blocked` honoured, a new `email` unverified
    unless `email_verified` is given; Forbidden (see check_self_edit), Invalid, Conflict,
    Unauthenticated `reauthentication_required` for an admin changing its own email
    without a recent sign-in."""
    check_self_edit(actor=actor, fields=set(changes))
    changes = dict(changes)
    blocked = changes.pop("blocked", None)
    for name in METADATA_FIELDS:
        if name in changes:
            changes[name] = merge_metadata(getattr(user, name), changes[name])
            _check_metadata_size(name, changes[name])
    if "email" in changes and changes["email"] != user.email:
        user_service.check_recent_sign_in(actor=actor, user=user)
        changes.setdefault("email_verified", False)
    if changes:
        user_service.update_user(user=user, changes=changes, actor=actor.label, ip=actor.ip)
    if blocked is not None:
        set_blocked(actor=actor, user=user, blocked=blocked)
    db.session.flush()
    return user
