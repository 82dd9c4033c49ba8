"""The console's Users pages: the search (the Management API's user search engine and `q`
syntax, keyset paged newest first) and a user's page (profile, metadata, identities,
second factors, sessions, recent audit events). The actions on a user are in
user_actions.py."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Response, request

from app.api.auth import public
from app.api.console import blp, page, show_form_on_error
from app.api.console.edge import console_tenant, console_view
from app.audit import service as audit_service
from app.credentials import authentication_methods as method_service
from app.credentials import recovery as recovery_service
from app.tokens import sessions as session_service
from app.users import search as search_service
from app.users import service as user_service
from app.users.models import User

PAGE_SIZE = 50
RECENT_EVENTS = 20
# What a redirect after an action says on the page it lands on (?done=…).
NOTICES = {
    "blocked": "The user is blocked: they cannot sign in, and their tokens are refused.",
    "unblocked": "The user is unblocked.",
    "deleted": "The user was deleted.",
    "reset_sent": "A password reset link is on its way to the user's email address.",
    "method_removed": "The second factor was removed.",
    "codes_removed": "The recovery codes were removed.",
    "signed_out": "The user was signed out of every session.",
    "metadata_saved": "The metadata was saved.",
}


def when(moment: datetime | None) -> str:
    """A time as the console prints it."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "—"


def notice() -> str | None:
    return NOTICES.get(request.args.get("done", ""))


def _row(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "username": user.username,
        "name": user.display_name,
        "blocked": user.blocked,
        "created_at": when(user.created_at),
        "last_login_at": when(user.last_login_at),
    }


@blp.route("/users", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def users() -> Response:
    """Search the tenant's users (newest first without a query)"""
    q = request.args.get("q", "")[:512]
    show_form_on_error("users.html", q=q, users=None, next_url=None)
    found = search_service.search_newest(
        query=search_service.parse_q(q, bare_prefix=True),
        limit=PAGE_SIZE,
        cursor=request.args.get("cursor") or None,
    )
    next_url = None
    if found.next_cursor is not None:
        next_url = "/console/users?" + urlencode(
            {k: v for k, v in (("q", q), ("cursor", found.next_cursor)) if v}
        )
    return page(
        "users.html",
        q=q,
        users=[_row(user) for user in found.items],
        next_url=next_url,
        deeper=bool(request.args.get("cursor")),
        notice=notice(),
    )


def _sessions(user: User) -> list[dict[str, Any]]:
    """The user's live sessions, each followed by those issued through it."""
    rows: list[dict[str, Any]] = []

    def add(view: session_service.SessionView, depth: int) -> None:
        rows.append(
            {
                "kind": view.kind,
                "client_id": view.client_id,
                "ip": view.ip,
                "user_agent": view.user_agent,
                "created_at": when(view.created_at),
                "last_seen_at": when(view.last_seen_at),
                "depth": depth,
            }
        )
        for child in view.children:
            add(child, depth + 1)

    for view in session_service.live_sessions(user=user, current_session_id=None):
        add(view, 0)
    return rows


def user_context(user_id: str) -> dict[str, Any]:
    """Everything a user's page shows, as plain values (the page is also shown again
    after a refused action, once the request's transaction has ended).
    NotFound `user_not_found` (also for another tenant's id)."""
    user = user_service.get_user(user_id)
    methods = method_service.list_methods(user)
    events = audit_service.list_events(user_id=user.id, limit=RECENT_EVENTS).items
    return {
        "user": {
            **_row(user),
            "email_verified": user.email_verified,
            "nickname": user.nickname,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "phone_number": user.phone_number,
            "updated_at": when(user.updated_at),
            "logins_count": user.logins_count,
            "has_password": bool(user.password_hash),
        },
        "app_metadata": pretty_json(user.app_metadata),
        "user_metadata": pretty_json(user.user_metadata),
        "identities": [
            {
                "provider": identity["provider"],
                "user_id": identity["user_id"],
                "connection": identity["connection"],
                "social": identity["isSocial"],
            }
            for identity in user.identities
        ],
        "totp": next(
            (
                {
                    "id": m.id,
                    "confirmed": m.confirmed,
                    "created_at": when(m.created_at),
                    "last_auth_at": when(m.last_auth_at),
                }
                for m in methods
                if m.type == method_service.TOTP
            ),
            None,
        ),
        "passkeys": [
            {
                "id": m.id,
                "name": m.name or "Passkey",
                "created_at": when(m.created_at),
                "last_auth_at": when(m.last_auth_at),
                "device_type": m.credential_device_type,
            }
            for m in methods
            if m.type == method_service.PASSKEY
        ],
        "recovery_codes": recovery_service.remaining(user),
        "sessions": _sessions(user),
        "events": [
            {
                "created_at": when(event.created_at),
                "action": event.action,
                "actor": event.actor,
                "ip": event.ip,
            }
            for event in events
        ],
        "audit_url": "/console/audit?" + urlencode({"user_id": user.id}),
    }


def pretty_json(value: Any) -> str:
    return json.dumps(value or {}, indent=2, sort_keys=True, ensure_ascii=False)


@blp.route("/users/<user_id>", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def user_detail(user_id: str) -> Response:
    """A user's profile, metadata, identities, second factors, sessions and recent events"""
    return page("user.html", notice=notice(), **user_context(user_id))
