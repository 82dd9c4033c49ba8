"""Passwords: change one under the tenant's policy, revoking the user's other sessions;
and account edits that may carry a new password (the Management API's PATCH)."""

from __future__ import annotations

from typing import Any

from app.audit import service as audit_service
from app.core.db import db
from app.core.tenancy import Principal
from app.tokens import service as token_service
from app.users import passwords
from app.users import profile as profile_service
from app.users import service as user_service
from app.users.models import User


def change_password(
    *, actor: Principal, user: User, new_password: str, chosen_on_page: bool = False
) -> None:
    """Set a new password (Invalid when the tenant's policy refuses it; `chosen_on_page`:
    a hosted page's, which must also be off the common list) and revoke every session of
    the user except the one making the change. A user changing its own password must have
    signed in recently (Unauthenticated reauthentication_required)."""
    user_service.check_recent_sign_in(actor=actor, user=user)
    user_service.check_password(new_password, chosen_on_page=chosen_on_page)
    passwords.set_password(user, new_password)
    keep = actor.credential_id if actor.is_user and actor.user_id == user.id else None
    token_service.revoke_user_sessions(user=user, keep_session=keep)
    audit_service.record(
        action="user.password_changed", actor=actor.label, user_id=user.id, ip=actor.ip
    )
    db.session.flush()


def update_account(*, actor: Principal, user: User, changes: dict[str, Any]) -> User:
    """A profile PATCH (users.profile.update_user) that may also set `password`, which
    then revokes the user's sessions as change_password does; Forbidden, Invalid, Conflict."""
    profile_service.check_self_edit(actor=actor, fields=set(changes))
    changes = dict(changes)
    password = changes.pop("password", None)
    profile_service.update_user(actor=actor, user=user, changes=changes)
    if password is not None:
        change_password(actor=actor, user=user, new_password=password)
    return user
