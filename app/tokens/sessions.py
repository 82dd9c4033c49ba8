"""A user's live sessions as the account page shows them, and signing them out.

Three kinds of session: a browser sign-in session (no client, no refresh token: the
login page's), an application's session (client set; `parent_id` names the browser
sign-in session it was issued through, if any), and an API sign-in (no client, with
refresh tokens: the password grant, a custom token). Signing a session out ends every
session issued through it, so the tokens an app got through a browser stop working
with it; signing a user out everywhere (an administrator's act) ends them all. Runs in
the tenant in scope."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select, update

from app.audit import service as audit_service
from app.core.db import db, utcnow
from app.core.errors import NotFound
from app.tokens import service as token_service
from app.tokens.models import AuthSession, RefreshToken
from app.users.models import User

BROWSER = "browser"
APPLICATION = "application"
API = "api"
# More than anyone has; keeps the page (and the query) bounded.
MAX_LISTED = 200


@dataclass
class SessionView:
    """One live session: where it began (`ip`, `user_agent`), when it was last used,
    when the user authenticated (`auth_time`, how: `amr`) and when it ends at the latest,
    whether it is the one asking (`current`), and the sessions issued through it."""

    id: str
    user_id: str
    kind: str
    client_id: str | None
    ip: str | None
    user_agent: str | None
    created_at: datetime
    last_seen_at: datetime
    auth_time: datetime
    expires_at: datetime
    amr: list[str] = field(default_factory=list)
    current: bool = False
    children: list[SessionView] = field(default_factory=list)


def _live_rows(user: User) -> list[AuthSession]:
    now = utcnow()
    return list(
        db.session.scalars(
            select(AuthSession)
            .where(
                AuthSession.user_id == user.id,
                AuthSession.revoked_at.is_(None),
                AuthSession.generation == (user.session_generation or 0),
                AuthSession.expires_at > now,
            )
            .order_by(AuthSession.created_at.desc())
            .limit(MAX_LISTED)
        )
    )


def _with_refresh_tokens(ids: list[str]) -> set[str]:
    if not ids:
        return set()
    return set(
        db.session.scalars(
            select(RefreshToken.family_id).where(RefreshToken.family_id.in_(ids)).distinct()
        )
    )


def live_sessions(*, user: User, current_session_id: str | None) -> list[SessionView]:
    """The user's live sessions, `current_session_id` first, then the most recently used;
    a session issued through a live browser sign-in session is listed under it
    (`children`, and its use counts as the parent's), not on its own."""
    rows = _live_rows(user)
    api = _with_refresh_tokens([row.id for row in rows if row.client_id is None])
    views = {
        row.id: SessionView(
            id=row.id,
            user_id=row.user_id,
            kind=APPLICATION if row.client_id else (API if row.id in api else BROWSER),
            client_id=row.client_id,
            ip=row.ip,
            user_agent=row.user_agent,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at or row.created_at,
            auth_time=row.auth_time,
            expires_at=row.expires_at,
            amr=[str(method) for method in row.amr or []],
            current=row.id == current_session_id,
        )
        for row in rows
    }
    listed = []
    for row in rows:
        parent = views.get(row.parent_id) if row.parent_id else None
        if parent is not None:
            parent.children.append(views[row.id])
            parent.last_seen_at = max(parent.last_seen_at, views[row.id].last_seen_at)
        else:
            listed.append(views[row.id])
    # This browser's first, then the most recently used.
    listed.sort(key=lambda view: (not view.current, -view.last_seen_at.timestamp()))
    return listed


def _end(session_ids: list[str]) -> int:
    """End the sessions and every session issued through them; how many ended."""
    if not session_ids:
        return 0
    result = db.session.execute(
        update(AuthSession)
        .where(
            or_(AuthSession.id.in_(session_ids), AuthSession.parent_id.in_(session_ids)),
            AuthSession.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def sign_out_session(*, user: User, session_id: str, actor: str, ip: str | None) -> None:
    """End one of the user's live sessions and every session issued through it (an app's
    tokens got through that browser); audited `session.revoked`. NotFound
    `session_not_found` for a session that is not the user's or no longer live."""
    listed = {view.id for view in _flatten(live_sessions(user=user, current_session_id=None))}
    if session_id not in listed:
        raise NotFound("This session has already ended.", code="session_not_found")
    ended = _end([session_id])
    _audit_ended(user=user, target=session_id, ended=ended, actor=actor, ip=ip)


def sign_out_others(*, user: User, keep_session_id: str, actor: str, ip: str | None) -> int:
    """End every live session of the user but `keep_session_id` and the sessions issued
    through it (this browser and its apps); audited `session.revoked` (target "others").
    How many sessions ended."""
    kept = {keep_session_id}
    others = []
    for view in live_sessions(user=user, current_session_id=keep_session_id):
        if view.id == keep_session_id:
            kept.update(child.id for child in view.children)
        else:
            others.append(view.id)
    ended = _end(others)
    _audit_ended(user=user, target="others", ended=ended, actor=actor, ip=ip)
    return ended


def sign_out_everywhere(*, user: User, actor: str, ip: str | None) -> int:
    """End every session of the user, each app's included, and so every access and
    refresh token they hold (token_service.revoke_user_sessions: also one being minted
    right now); audited `session.revoked` (target "all"). How many live sessions ended."""
    ended = len(_flatten(live_sessions(user=user, current_session_id=None)))
    token_service.revoke_user_sessions(user=user)
    _audit_ended(user=user, target="all", ended=ended, actor=actor, ip=ip)
    return ended


def _audit_ended(*, user: User, target: str, ended: int, actor: str, ip: str | None) -> None:
    audit_service.record(
        action="session.revoked",
        actor=actor,
        user_id=user.id,
        target=target,
        ip=ip,
        data={"sessions_ended": ended},
    )
    db.session.flush()


def reauthenticated(*, session_id: str) -> None:
    """The user of a browser sign-in session entered its password again: its sign-in
    counts from now (`auth_time`, which recent-sign-in checks read)."""
    now = utcnow()
    db.session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(auth_time=now, last_seen_at=now)
        .execution_options(synchronize_session=False)
    )


def touch(*, session_id: str) -> None:
    """Note that a session was just used (its "last seen")."""
    db.session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id)
        .values(last_seen_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _flatten(views: list[SessionView]) -> list[SessionView]:
    return [item for view in views for item in (view, *view.children)]
