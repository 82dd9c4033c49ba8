"""Users' passwords: set one (its argon2id hash and its keyed tag), find the users a login
may name, and keep a stored hash and tag current after a sign-in.

The tag (core.security.password_tag: one byte, and which key made it) lets a sign-in by an
address that several password users hold verify argon2 only for the holders whose tag
matches: a wrong password then usually matches none and costs the one dummy verification
an unknown login costs, however many accounts hold the address. Nobody is left out of the
candidates, so no number of other holders can lock anyone out.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.core import security
from app.core.db import db
from app.core.tenancy import current_tenant_id
from app.users.models import User


def tag_of(user: User, password: str) -> int:
    """The tag `password` has for `user` (under the tenant in scope for a new user)."""
    tenant_id = user.tenant_id or current_tenant_id()
    return security.password_tag(current_app.config["SECRET_KEY"], tenant_id, user.id, password)


def set_password(user: User, password: str) -> None:
    """Store a new password's hash and tag (the policy is the caller's to check)."""
    user.password_hash = security.hash_password(password)
    user.password_tag = tag_of(user, password)


def login_candidates(*, username: str | None, email: str | None) -> list[User]:
    """The users a login may name: the owner of the username; else the password users
    holding the address: its verified holders when there are any (the mailbox proved it
    theirs; anyone may type the address onto an account), else every holder; oldest first.

    Standard OAuth clients only send `username`, so the caller passes it as `email` too.
    There is no cap: tags keep the cost of a sign-in at one verification."""
    conditions = []
    if username:
        conditions.append(User.username_normalized == username.casefold())
    if email:
        conditions.append(
            (User.email_normalized == email.casefold()) & User.password_hash.is_not(None)
        )
    if not conditions:
        return []
    # No eager policies: only the one that signs in needs them (for its token's scopes),
    # and a join would multiply the rows of an address many accounts hold.
    query = select(User).where(or_(*conditions)).order_by(User.created_at, User.id)
    matches = list(db.session.scalars(query))
    if username:
        folded = username.casefold()
        by_name = [u for u in matches if u.username_normalized == folded]
        if by_name:
            return by_name
    wanted = (email or "").casefold()
    holders = [u for u in matches if u.email_normalized == wanted and u.password_hash]
    verified = [u for u in holders if u.email_verified]
    return verified or holders


def worth_verifying(candidates: list[User], password: str) -> list[User]:
    """The candidates whose stored hash `password` may match: all of a single one; among
    several, those whose tag matches, and those whose tag says nothing (none yet, or made
    under another SECRET_KEY: after a rotation nobody is shut out, and the next sign-in
    stores a current tag)."""
    if len(candidates) < 2:
        return candidates
    worth = []
    for user in candidates:
        tag = tag_of(user, password)
        stored = user.password_tag
        if stored is None or stored >> 8 != tag >> 8 or stored == tag:
            worth.append(user)
    return worth


def keep_current(user: User, password: str) -> None:
    """After `password` was verified for `user`: rehash it if the parameters changed (an
    edit of the password), and store a missing or stale tag (no edit: the row's version,
    updated_at and ETag stay, as for the rest of a sign-in)."""
    if user.password_hash and security.password_needs_rehash(user.password_hash):
        set_password(user, password)
        return
    tag = tag_of(user, password)
    if user.password_tag == tag:
        return
    table = User.__table__
    db.session.connection().execute(
        update(table)
        .where(table.c.tenant_id == user.tenant_id, table.c.id == user.id)
        .values(password_tag=tag, updated_at=table.c.updated_at)
    )
    set_committed_value(user, "password_tag", tag)
