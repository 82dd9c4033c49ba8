"""Who the account pages (`/account` and the pages under it) serve: the user of this
browser's sign-in session with the page's tenant (`?tenant=ID` picks one when the browser
has sessions with several; with one, that one).

`current_account()` is None when the browser is not signed in there; `require_account()`
raises AccountSignInRequired, which the account routes answer with the sign-in; a change
of a credential also needs a recent sign-in (`require_recent`, SPEC §8:
REAUTH_MAX_AGE_SECONDS), else ReauthenticationRequired sends the user to sign in again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app, g, request

from app.api.hosted import browser
from app.api.hosted.edge import named_tenant
from app.applications import login
from app.core.db import utcnow


@dataclass(frozen=True)
class Account:
    """The signed-in user of an account page, and the sign-in session it came through."""

    tenant_id: str
    session_id: str
    user_id: str
    auth_time: datetime
    amr: tuple[str, ...]


class AccountSignInRequired(Exception):
    """The browser has no live sign-in session with the page's tenant."""

    def __init__(self, tenant_id: str | None) -> None:
        super().__init__("sign-in required")
        self.tenant_id = tenant_id


class ReauthenticationRequired(Exception):
    """The change asked for needs a sign-in more recent than REAUTH_MAX_AGE_SECONDS."""

    def __init__(self, account: Account) -> None:
        super().__init__("reauthentication required")
        self.account = account


def page_tenant() -> str | None:
    """The tenant an account page serves: `?tenant=` (or the form's `tenant`), else the
    only tenant this browser has a sign-in session with."""
    named = request.args.get("tenant") or request.form.get("tenant")
    if named:
        tenant_id: str | None = named[:32]
    else:
        sessions = browser.all_sessions()
        tenant_id = next(iter(sessions)) if len(sessions) == 1 else None
    g.page_tenant = tenant_id  # the page takes this tenant's look (hosted.branding)
    return tenant_id


# The account pages' edge: `@in_page_tenant(from_=account_page)` runs them in page_tenant().
account_page = named_tenant(page_tenant)


def current_account() -> Account | None:
    """The account of this browser's live sign-in session with the page's tenant (read in
    that tenant's scope, which the page's edge entered)."""
    tenant_id = page_tenant()
    session_id = browser.read_session(tenant_id)
    if tenant_id is None or session_id is None:
        return None
    found = login.live_session(tenant_id=tenant_id, session_id=session_id)
    if found is None:
        return None
    user, session = found
    return Account(
        tenant_id=tenant_id,
        session_id=session.id,
        user_id=user.id,
        auth_time=session.auth_time,
        amr=tuple(session.amr or ()),
    )


def require_account() -> Account:
    account = current_account()
    if account is None:
        raise AccountSignInRequired(page_tenant())
    return account


def is_recent(account: Account) -> bool:
    max_age = current_app.config["REAUTH_MAX_AGE_SECONDS"]
    return (utcnow() - account.auth_time).total_seconds() <= max_age


def require_recent(account: Account) -> Account:
    """The account, when its sign-in is recent enough to change a credential."""
    if not is_recent(account):
        raise ReauthenticationRequired(account)
    return account
