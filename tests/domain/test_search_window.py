"""The newest-first users search at a size where its two ways differ: a page found among
the newest users (a common prefix), and matches that are all older than that window (a
narrow prefix of the oldest users), collected and sorted; both page on by cursor to the
same answer a plain sort gives."""

from __future__ import annotations

from flask import Flask
from sqlalchemy.engine import make_url

from app.core.tenancy import tenant_scope
from app.users import search
from bench.seed import copy_users
from tests.factories import TenantHandle

USERS = search.WINDOW + 1000


def _all_pages(app: Flask, tenant_id: str, q: str) -> list[str]:
    seen: list[str] = []
    cursor = None
    with app.app_context(), tenant_scope(tenant_id):
        query = search.parse_q(q, bare_prefix=True)
        while True:
            page = search.search_newest(query=query, limit=50, cursor=cursor)
            seen += [user.id for user in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor


def test_both_ways_page_newest_first_to_the_end(app: Flask, tenant: TenantHandle) -> None:
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    copy_users(url.render_as_string(hide_password=False), tenant.id, USERS)
    # Bulk-loaded users share created_at: newest first is then by id, descending.
    common = _all_pages(app, tenant.id, "user0000")  # every bulk user: the window's way
    assert common == [f"user{n:08d}" for n in reversed(range(USERS))]
    oldest = _all_pages(app, tenant.id, "user000001")  # 100 of the oldest: collected
    assert oldest == [f"user{n:08d}" for n in reversed(range(100, 200))]
    assert _all_pages(app, tenant.id, "nobody-matches") == []
