"""Email verification: `POST /users/me/verify-email` queues a mail that the real worker
sends through Postmark (the local stand-in); its link, opened once, marks the address
verified (audited); forged, used or stale links change nothing."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import TenantHandle, assert_me_error
from tests.oauth_support import PASSWORD, audit_events, bearer, rate_limited_app, sign_in
from tests.postmark_fake import FakePostmark, ReceivedMail

SENDER = "noreply@example.com"
LINK = re.compile(r"http://gatehouse\.test/verify-email\?token=([^\s\"'<>&]+)")


@pytest.fixture()
def mail_tenant(app: Flask) -> TenantHandle:
    return factories.make_tenant(
        app, "mailco", email_from=SENDER, postmark_server_token="pm-token-1"
    )


@pytest.fixture()
def joe_token(app: Flask, client: FlaskClient, mail_tenant: TenantHandle) -> str:
    factories.make_user(
        app,
        mail_tenant.id,
        user_id="u-joe",
        username="joe",
        email="joe@example.com",
        password=PASSWORD,
    )
    return sign_in(client, mail_tenant.id, "joe")["access_token"]


def _ask(client: FlaskClient, token: str):
    return client.post("/users/me/verify-email", headers=bearer(token))


def _mailed_link(postmark: FakePostmark, count: int = 1) -> tuple[ReceivedMail, str]:
    mails = factories.wait_until(lambda: len(postmark.mails()) >= count and postmark.mails())
    assert mails and len(mails) == count, postmark.received
    mail = mails[-1]
    text = LINK.search(mail.body["TextBody"])
    markup = LINK.search(html.unescape(mail.body["HtmlBody"]))
    assert text and markup and text.group(1) == markup.group(1), mail.body
    return mail, unquote(text.group(1))


def _verified(client: FlaskClient, tenant: TenantHandle) -> bool:
    return client.get("/user/u-joe", headers=tenant.headers).get_json()["email_verified"]


def test_the_link_mailed_through_the_worker_verifies_the_address_once(
    app: Flask,
    client: FlaskClient,
    mail_tenant: TenantHandle,
    joe_token: str,
    postmark: FakePostmark,
    celery_worker: object,
) -> None:
    asked = _ask(client, joe_token)
    assert asked.status_code == 200 and asked.get_json() == {"msg": "ok"}
    mail, token = _mailed_link(postmark)
    assert mail.headers["X-Postmark-Server-Token"] == "pm-token-1"
    assert (mail.body["From"], mail.body["To"]) == (SENDER, "joe@example.com")
    assert mail.body["Subject"] == "Confirm your email address"
    [delivery] = factories.email_deliveries(app, mail_tenant.id)
    assert (delivery.kind, delivery.status) == ("email_verification", "sent")
    assert not _verified(client, mail_tenant)

    page = client.get("/verify-email", query_string={"token": token})

    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "Email address confirmed" in page.get_data(as_text=True)
    assert _verified(client, mail_tenant)
    [event] = audit_events(client, mail_tenant.headers, "user.email_verified")
    assert (event["user_id"], event["actor"]) == ("u-joe", "user:u-joe")
    again = client.get("/verify-email", query_string={"token": token})
    assert again.status_code == 400
    assert "invalid, used or expired" in again.get_data(as_text=True)
    assert len(audit_events(client, mail_tenant.headers, "user.email_verified")) == 1


def test_a_used_link_stays_used_when_the_address_is_unverified_again(
    client: FlaskClient,
    mail_tenant: TenantHandle,
    joe_token: str,
    postmark: FakePostmark,
    celery_worker: object,
) -> None:
    """Issue 22, item 6: the link was bound only to the address and its state, so once
    the address went back to unverified the same link verified it again."""
    _ask(client, joe_token)
    _, token = _mailed_link(postmark)
    assert client.get("/verify-email", query_string={"token": token}).status_code == 200
    unverified = client.patch(
        "/users/u-joe", json={"emailVerified": False}, headers=mail_tenant.m2_headers
    )
    assert unverified.status_code == 200 and not _verified(client, mail_tenant)

    replayed = client.get("/verify-email", query_string={"token": token})

    assert replayed.status_code == 400
    assert "<code>verification_token_invalid</code>" in replayed.get_data(as_text=True)
    assert not _verified(client, mail_tenant)
    assert len(audit_events(client, mail_tenant.headers, "user.email_verified")) == 1
    # A new link works (once).
    _ask(client, joe_token)
    _, fresh = _mailed_link(postmark, count=2)
    assert client.get("/verify-email", query_string={"token": fresh}).status_code == 200
    assert _verified(client, mail_tenant)


def test_a_link_dies_when_the_address_changes(
    client: FlaskClient,
    mail_tenant: TenantHandle,
    joe_token: str,
    postmark: FakePostmark,
    celery_worker: object,
) -> None:
    _ask(client, joe_token)
    _, token = _mailed_link(postmark)
    changed = client.patch(
        "/users/u-joe", json={"email": "joe@elsewhere.example"}, headers=mail_tenant.m2_headers
    )
    assert changed.status_code == 200

    assert client.get("/verify-email", query_string={"token": token}).status_code == 400
    assert not _verified(client, mail_tenant)


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "eyJ0aWQiOiJ4In0.Zx3k0A.forged-signature-0123456789", "x" * 3000],
    ids=["empty", "garbage", "forged", "huge"],
)
def test_forged_links_change_nothing(
    client: FlaskClient, mail_tenant: TenantHandle, joe_token: str, token: str
) -> None:
    page = client.get("/verify-email", query_string={"token": token})

    assert page.status_code == 400
    assert "<code>verification_token_invalid</code>" in page.get_data(as_text=True)
    assert not _verified(client, mail_tenant)


def test_no_address_or_an_already_verified_one_is_a_clear_error(
    app: Flask, client: FlaskClient, mail_tenant: TenantHandle
) -> None:
    factories.make_user(app, mail_tenant.id, username="noaddr", password=PASSWORD)
    factories.make_user(
        app,
        mail_tenant.id,
        username="done",
        email="done@example.com",
        email_verified=True,
        password=PASSWORD,
    )
    for login, key in (("noaddr", "EMAIL_MISSING"), ("done", "EMAIL_ALREADY_VERIFIED")):
        token = sign_in(client, mail_tenant.id, login)["access_token"]
        assert_me_error(_ask(client, token), 400, key)
    assert factories.email_deliveries(app, mail_tenant.id) == []


def test_a_tenant_without_mail_settings_says_so(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, username="ann", email="ann@example.com", password=PASSWORD)
    token = sign_in(client, tenant.id, "ann")["access_token"]

    assert_me_error(_ask(client, token), 400, "TOKEN_OR_EMAIL_NOT_SET")


def test_asking_needs_the_users_own_token(client: FlaskClient, mail_tenant: TenantHandle) -> None:
    assert_me_error(client.post("/users/me/verify-email"), 401, "MISSING_CREDENTIALS")
    assert_me_error(
        client.post("/users/me/verify-email", headers=mail_tenant.headers),
        403,
        "USER_TOKEN_REQUIRED",
    )


def test_asking_again_is_rate_limited_per_user(
    app: Flask, database_url: str, tmp_path: Path, mail_tenant: TenantHandle, joe_token: str
) -> None:
    with rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_VERIFY_PER_USER="2 per hour"
    ) as limited:
        client = limited.test_client()
        assert _ask(client, joe_token).status_code == 200
        assert _ask(client, joe_token).status_code == 200
        refused = _ask(client, joe_token)

    assert_me_error(refused, 429, "RATE_LIMITED")
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(factories.email_deliveries(app, mail_tenant.id)) == 2
