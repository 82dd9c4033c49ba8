"""What the account page (`/account`) does for the user of a browser sign-in session:
confirm the password again before a credential change, change the name and the
password, list the user's sessions and sign them out. The sign-in itself is the login
page's (applications.login, without an authorization request). Runs in the tenant in
scope, which the page entered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.applications import login
from app.applications import service as application_service
from app.audit import service as audit_service
from app.core.db import db
from app.core.errors import InvalidGrant, NotFound
from app.core.tenancy import Principal
from app.credentials import service as credential_service
from app.signin import flow
from app.tokens import sessions as session_service
from app.tokens.sessions import SessionView
from app.users import service as user_service
from app.users.models import User

NAME_FIELDS = ("display_name", "first_name", "last_name")


@dataclass(frozen=True)
class Listed:
    """The sessions the page lists, and the names of the applications they are for."""

    sessions: list[SessionView]
    app_names: dict[str, str]


def signed_in_user(*, tenant_id: str, session_id: str) -> User:
    """The user of a live browser sign-in session; NotFound `session_not_found` when it
    ended (the page then asks to sign in)."""
    found = login.live_session(tenant_id=tenant_id, session_id=session_id)
    if found is None:
        raise NotFound("You are signed out.", code="session_not_found")
    return found[0]


def reauthenticate(*, user: User, session_id: str, password: str, ip: str | None) -> None:
    """Check the signed-in user's password again, through the sign-in flow (its limits,
    and its audited InvalidGrant), and count the browser session's sign-in from now;
    audited `user.reauthenticated`."""
    found = flow.check_password(
        tenant_id=user.tenant_id,
        ip=ip,
        username=user.username,
        email=None if user.username else user.email,
        password=password,
    )
    if found.id != user.id:  # a shared address: another account's password
        raise InvalidGrant("Wrong username, email or password")
    session_service.reauthenticated(session_id=session_id)
    audit_service.record(
        action="user.reauthenticated", actor=f"user:{user.id}", user_id=user.id, ip=ip
    )


def change_name(*, user: User, names: dict[str, str | None]) -> User:
    """Set the user's display, first and last name (an empty one is cleared)."""
    changes = {key: (names.get(key) or None) for key in NAME_FIELDS}
    user_service.update_user(user=user, changes=changes, actor=f"user:{user.id}")
    db.session.flush()
    return user


def change_password(
    *, user: User, session_id: str, auth_time: datetime, new_password: str, ip: str | None
) -> None:
    """Set a password the user chose on the page (the policy, common list included),
    keeping this browser's session and ending every other; audited
    `user.password_changed`. Invalid under the policy; Unauthenticated
    `reauthentication_required` when the sign-in is not recent."""
    actor = Principal(
        tenant_id=user.tenant_id,
        user_id=user.id,
        kind="user",
        credential_id=session_id,
        ip=ip,
        auth_time=int(auth_time.timestamp()),
    )
    credential_service.change_password(
        actor=actor, user=user, new_password=new_password, chosen_on_page=True
    )


def list_sessions(*, user: User, current_session_id: str) -> Listed:
    """The user's live sessions (this browser's marked) and their applications' names."""
    listed = session_service.live_sessions(user=user, current_session_id=current_session_id)
    names = {
        app.id: app.name for app in application_service.list_applications(tenant_id=user.tenant_id)
    }
    return Listed(sessions=listed, app_names=names)


def sign_out_session(*, user: User, session_id: str, ip: str | None) -> None:
    """End one of the user's sessions and those issued through it; NotFound."""
    session_service.sign_out_session(
        user=user, session_id=session_id, actor=f"user:{user.id}", ip=ip
    )


def sign_out_others(*, user: User, keep_session_id: str, ip: str | None) -> int:
    """End every session of the user but this browser's and its apps'."""
    return session_service.sign_out_others(
        user=user, keep_session_id=keep_session_id, actor=f"user:{user.id}", ip=ip
    )


def seen(*, session_id: str) -> None:
    """The browser's sign-in session was just used (the account page was opened)."""
    session_service.touch(session_id=session_id)
