"""Users' passwords: set one (its argon2id hash and its keyed tag), find the users a login
may name, and keep a stored hash and tag current after a sign-in: an imported hash
(issue 24) becomes argon2id at its first successful verification, audited
`user.password_rehashed` here, in the sign-in's transaction, whatever the surface.

The tag (core.security.password_tag: one byte, and which key made it) lets a sign-in by an
address that several password users hold verify argon2 only for the holders whose tag
matches: a wrong password then usually matches none and costs the one dummy verification
an unknown login costs, however many accounts hold the address. Nobody is left out of the
candidates, so no number of other holders can lock anyone out.

It also holds the shipped list of common passwords the hosted pages refuse.
"""

from __future__ import annotations

import functools
from pathlib import Path

from flask import current_app
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from app.audit import service as audit_service
from app.core import security
from app.core.db import db, utcnow
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


def choose_candidates(
    matches: list[User], *, username: str | None, email: str | None
) -> list[User]:
    """The users a login may name among `matches` (the users holding the username or the
    address, oldest first): the owner of the username; else the password users holding
    the address: its verified holders when there are any (the mailbox proved it theirs;
    anyone may type the address onto an account), else every holder.

    Standard OAuth clients only send `username`, so the caller passes it as `email` too.
    There is no cap: tags keep the cost of a sign-in at one verification. The read that
    finds the matches is the sign-in's own (app.signin.lookup)."""
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


def keep_current(user: User, password: str, *, ip: str | None = None) -> None:
    """After `password` was verified for `user`: rehash it when it is not our current
    argon2id (an imported hash, or other parameters), and store a missing or stale tag.

    The rehash is an edit of the row (version, updated_at and so the ETag move: the
    directory shows the hash), written only if the row still holds the hash that was
    verified: of two first sign-ins at once, one rewrites it and the other finds it
    rewritten and leaves it (both succeed, one argon2id hash stays, no lost update). An
    imported hash upgraded here is audited as `user.password_rehashed` with its format
    and whether it was weak, in this transaction (never the hash). Storing a tag alone is
    no edit (the rest of a sign-in is none either)."""
    stored = user.password_hash
    if stored and security.password_needs_rehash(stored):
        _rehash(user, password, stored, ip)
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


def _rehash(user: User, password: str, stored: str, ip: str | None) -> None:
    origin = security.foreign_hash_origin(stored)
    new_hash, tag, now = security.hash_password(password), tag_of(user, password), utcnow()
    table = User.__table__
    # Core, conditional on the verified hash: under READ COMMITTED a concurrent upgrade
    # holds the row until it commits, then this matches nothing (a versioned ORM flush
    # would raise StaleDataError there instead).
    version = db.session.connection().scalar(
        update(table)
        .where(
            table.c.tenant_id == user.tenant_id,
            table.c.id == user.id,
            table.c.password_hash == stored,
        )
        .values(
            password_hash=new_hash,
            password_tag=tag,
            version=table.c.version + 1,
            updated_at=now,
        )
        .returning(table.c.version)
    )
    if version is None:
        # Someone else's sign-in (or a password change) got there first: read it afresh.
        db.session.expire(user, ["password_hash", "password_tag", "version", "updated_at"])
        return
    for name, value in (
        ("password_hash", new_hash),
        ("password_tag", tag),
        ("version", version),
        ("updated_at", now),
    ):
        set_committed_value(user, name, value)
    if origin is not None:
        scheme, weak = origin
        audit_service.record(
            action="user.password_rehashed",
            actor=f"user:{user.id}",
            user_id=user.id,
            ip=ip,
            data={"from": scheme, "weak": weak},
        )


COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")


@functools.cache
def _common_passwords() -> frozenset[str]:
    """The shipped list of the most common breached passwords, folded to lower case."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().casefold() for line in lines if line.strip())


def is_common(password: str) -> bool:
    """Whether the password (ignoring case) is on the shipped list of common ones."""
    return password.casefold() in _common_passwords()
