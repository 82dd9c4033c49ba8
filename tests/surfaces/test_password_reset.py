"""Password reset (the RUAL user API): `POST /auth/password-reset` mails a link through
Postmark (the local fake) from the real worker; `POST /auth/password-reset/confirm` sets a
new password once, revokes every session, and refuses used, expired, forged or stale tokens."""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core import security
from tests import factories
from tests.factories import PASSWORD, TenantHandle, assert_me_error
from tests.oauth_support import (
    assert_oauth_error,
    bearer,
    confirmed_totp,
    next_totp,
    rate_limited_app,
    refresh,
    token_request,
    variant_app,
)
from tests.postmark_fake import FakePostmark, ReceivedMail

NEW_PASSWORD = "a brand new staple 42"
HOST = "app.example.com"
SENDER = "noreply@example.com"
PM_TOKEN = "pm-token-1"
LINK = re.compile(r"https://app\.example\.com/reset-password\?token=([^\s\"'<>&]+)")


@pytest.fixture()
def mail_tenant(app: Flask) -> TenantHandle:
    return factories.make_tenant(
        app,
        "mailco",
        email_from=SENDER,
        postmark_server_token=PM_TOKEN,
        password_reset_hosts=[HOST],
    )


@pytest.fixture()
def joe(app: Flask, mail_tenant: TenantHandle) -> str:
    return factories.make_user(
        app,
        mail_tenant.id,
        user_id="u-joe",
        username="joe",
        email="joe@example.com",
        password=PASSWORD,
    )


def ask_reset(client: FlaskClient, tenant_id: str | None, **body: Any) -> Any:
    headers = {"X-Tenant-ID": tenant_id} if tenant_id else {}
    return client.post("/auth/password-reset", json={"host": HOST, **body}, headers=headers)


def confirm(client: FlaskClient, token: str, password: str = NEW_PASSWORD) -> Any:
    return client.post("/auth/password-reset/confirm", json={"token": token, "password": password})


def assert_ok(response: Any) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"msg": "ok"}


def wait_for_mails(postmark: FakePostmark, count: int) -> list[ReceivedMail]:
    mails = factories.wait_until(lambda: len(postmark.mails()) >= count and postmark.mails())
    assert mails and len(mails) == count, postmark.received
    return mails


def token_of(mail: ReceivedMail) -> str:
    """The reset token in a mail's text body (URL-decoded); the HTML body has the same."""
    text_match = LINK.search(mail.body["TextBody"])
    html_match = LINK.search(html.unescape(mail.body["HtmlBody"]))
    assert text_match and html_match, mail.body
    assert text_match.group(1) == html_match.group(1)
    return unquote(text_match.group(1))


def mailed_token(client: FlaskClient, postmark: FakePostmark, tenant_id: str, **who: str) -> str:
    count = len(postmark.mails())
    assert_ok(ask_reset(client, tenant_id, **who))
    return token_of(wait_for_mails(postmark, count + 1)[-1])


def sign_in_status(client: FlaskClient, tenant_id: str, login: str, password: str) -> int:
    data = {"grant_type": "password", "username": login, "password": password}
    return client.post("/oauth/token", data=data, headers={"X-Tenant-ID": tenant_id}).status_code


def audit(client: FlaskClient, tenant: TenantHandle, action: str) -> list[dict[str, Any]]:
    response = client.get("/audit-events", query_string={"action": action}, headers=tenant.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["items"]


# --- the journey ----------------------------------------------------------------------------


def test_reset_by_email_end_to_end(client, mail_tenant, joe, postmark, celery_worker):
    before = factories.sign_in(client, mail_tenant.id, "joe", PASSWORD)
    assert client.get("/users/me", headers=bearer(before["access_token"])).status_code == 200

    assert_ok(ask_reset(client, mail_tenant.id, email="joe@example.com"))
    [mail] = wait_for_mails(postmark, 1)
    assert mail.headers["X-Postmark-Server-Token"] == PM_TOKEN
    assert mail.body["From"] == SENDER
    assert mail.body["To"] == "joe@example.com"
    assert mail.body["Subject"]
    token = token_of(mail)

    tampered = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    assert_me_error(confirm(client, tampered), 400, "INVALID_TOKEN")
    assert_ok(confirm(client, token))
    assert_me_error(confirm(client, token, "yet another password"), 400, "INVALID_TOKEN")

    assert sign_in_status(client, mail_tenant.id, "joe", PASSWORD) == 401
    assert sign_in_status(client, mail_tenant.id, "joe", NEW_PASSWORD) == 200
    # Every session from before the reset is gone: its access and its refresh token.
    assert client.get("/users/me", headers=bearer(before["access_token"])).status_code == 401
    refused = refresh(client, before["refresh_token"], mail_tenant.id)
    assert_oauth_error(refused, 401, "invalid_grant")
    assert len(postmark.mails()) == 1

    requested = audit(client, mail_tenant, "password_reset.requested")
    confirmed = audit(client, mail_tenant, "password_reset.confirmed")
    assert [e["user_id"] for e in requested] == [joe]
    assert [e["user_id"] for e in confirmed] == [joe]
    dumped = json.dumps(requested + confirmed)
    assert token not in dumped and token.split(".")[-1] not in dumped
    assert PASSWORD not in dumped and NEW_PASSWORD not in dumped


def test_reset_by_username(client, mail_tenant, joe, postmark, celery_worker):
    token = mailed_token(client, postmark, mail_tenant.id, username="joe")
    assert postmark.mails()[0].body["To"] == "joe@example.com"
    assert_ok(confirm(client, token))
    assert sign_in_status(client, mail_tenant.id, "joe", NEW_PASSWORD) == 200


def test_the_reset_mail_names_the_second_factor_the_user_keeps(
    client, mail_tenant, joe, postmark, celery_worker
):
    # Without one, the mail says nothing about it.
    plain = mailed_token(client, postmark, mail_tenant.id, username="joe")
    [first] = postmark.mails()
    assert "second factor" not in first.body["TextBody"] and plain

    session = factories.sign_in(client, mail_tenant.id, "joe", PASSWORD)
    secret = confirmed_totp(client, session["access_token"])
    token = mailed_token(client, postmark, mail_tenant.id, username="joe")
    mail = postmark.mails()[-1]
    for body in (mail.body["TextBody"], html.unescape(mail.body["HtmlBody"])):
        assert "does not remove your second factor" in body
        assert "an authenticator app" in body
    # And so it is: the new password alone does not sign in.
    assert_ok(confirm(client, token))
    assert sign_in_status(client, mail_tenant.id, "joe", NEW_PASSWORD) == 403
    with_code = token_request(
        client,
        mail_tenant.id,
        grant_type="password",
        username="joe",
        password=NEW_PASSWORD,
        otp=next_totp(secret),
    )
    assert with_code.status_code == 200, with_code.get_data(as_text=True)


def test_unknown_users_get_the_same_answer_and_no_mail(
    app, client, mail_tenant, other_tenant, postmark, celery_worker
):
    # A user of another tenant with that address is no match here.
    factories.make_user(app, other_tenant.id, user_id="eve", username="eve", email="e@x.org")
    assert_ok(ask_reset(client, mail_tenant.id, email="nobody@example.com"))
    assert_ok(ask_reset(client, mail_tenant.id, username="nobody"))
    assert_ok(ask_reset(client, mail_tenant.id, email="e@x.org"))
    # A mail is only ever sent for a delivery row written by the request itself: with no
    # row committed, no worker can send one later, so nothing needs waiting for.
    assert factories.email_deliveries(app, mail_tenant.id) == []
    assert postmark.attempts() == 0
    # Misses are audited too (probing shows), with no user and nothing mailed.
    misses = audit(client, mail_tenant, "password_reset.requested")
    assert sorted(event["target"] for event in misses) == [
        "e@x.org",
        "nobody",
        "nobody@example.com",
    ]
    assert all(event["user_id"] is None and event["data"] == {"matched": False} for event in misses)


# --- request errors -------------------------------------------------------------------------


def test_a_request_without_body_is_empty_body(client, mail_tenant):
    response = client.post("/auth/password-reset", headers={"X-Tenant-ID": mail_tenant.id})
    assert_me_error(response, 400, "EMPTY_BODY")


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        json.dumps([{"email": "joe@example.com", "host": HOST}]),
        json.dumps({"email": "joe@example.com"}),
        json.dumps({"host": HOST}),
        json.dumps({"email": "joe@example.com", "host": HOST, "admin": True}),
        json.dumps({"email": 5, "host": HOST}),
    ],
    ids=["malformed", "array", "no-host", "no-user", "unknown-field", "wrong-type"],
)
def test_malformed_requests_are_invalid_body(client, mail_tenant, joe, postmark, raw):
    response = client.post(
        "/auth/password-reset",
        data=raw,
        content_type="application/json",
        headers={"X-Tenant-ID": mail_tenant.id},
    )
    assert_me_error(response, 400, "INVALID_BODY")
    assert postmark.attempts() == 0


def test_a_host_outside_the_allow_list_is_invalid_body(
    app, client, mail_tenant, joe, postmark, celery_worker
):
    response = client.post(
        "/auth/password-reset",
        json={"email": "joe@example.com", "host": "evil.example.net"},
        headers={"X-Tenant-ID": mail_tenant.id},
    )
    body = assert_me_error(response, 400, "INVALID_BODY")
    # It says which setting decides (the dialect's key stays INVALID_BODY).
    assert "password_reset_hosts" in body["message"] and "evil.example.net" in body["message"]
    assert factories.email_deliveries(app, mail_tenant.id) == []
    assert postmark.attempts() == 0


@pytest.mark.parametrize(
    "settings",
    [{}, {"email_from": SENDER}, {"postmark_server_token": PM_TOKEN}],
    ids=["neither", "no-token", "no-sender"],
)
def test_a_tenant_without_mail_settings_is_token_or_email_not_set(app, client, settings):
    assert not app.config["POSTMARK_SERVER_TOKEN"] and not app.config["EMAIL_FROM"]
    bare = factories.make_tenant(app, "bare", password_reset_hosts=[HOST], **settings)
    factories.make_user(app, bare.id, user_id="b1", username="bo", email="bo@example.com")
    response = ask_reset(client, bare.id, email="bo@example.com")
    assert_me_error(response, 400, "TOKEN_OR_EMAIL_NOT_SET")
    assert factories.email_deliveries(app, bare.id) == []


def test_a_request_without_tenant_is_400(client, mail_tenant, joe):
    assert_me_error(ask_reset(client, None, email="joe@example.com"), 400, "INVALID_BODY")


# --- confirm errors -------------------------------------------------------------------------


def test_forged_tokens_are_invalid_token(app, client, mail_tenant, joe):
    claims = {"tid": mail_tenant.id, "uid": joe, "rid": "0" * 32, "fp": "0" * 16}
    other_key = security.signed_dumps("not-our-secret-key", "password-reset", claims)
    no_request = security.signed_dumps(app.config["SECRET_KEY"], "password-reset", claims)
    other_purpose = security.signed_dumps(app.config["SECRET_KEY"], "custom-token", claims)
    for token in ["garbage", "a.b.c", other_key, no_request, other_purpose]:
        assert_me_error(confirm(client, token), 400, "INVALID_TOKEN")
    assert sign_in_status(client, mail_tenant.id, "joe", PASSWORD) == 200
    assert_me_error(client.post("/auth/password-reset/confirm"), 400, "EMPTY_BODY")
    response = client.post("/auth/password-reset/confirm", json={"token": "x"})
    assert_me_error(response, 400, "INVALID_BODY")


def test_a_token_dies_when_the_password_changes(client, mail_tenant, joe, postmark, celery_worker):
    token = mailed_token(client, postmark, mail_tenant.id, email="joe@example.com")
    session = factories.sign_in(client, mail_tenant.id, "joe", PASSWORD)
    changed = client.put(
        "/users/me",
        json={"password": "changed by joe 123"},
        headers=bearer(session["access_token"]),
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    assert_me_error(confirm(client, token), 400, "INVALID_TOKEN")
    assert sign_in_status(client, mail_tenant.id, "joe", "changed by joe 123") == 200
    assert sign_in_status(client, mail_tenant.id, "joe", NEW_PASSWORD) == 401


def test_a_too_short_password_keeps_the_token(app, client, postmark, celery_worker):
    strict = factories.make_tenant(
        app,
        "strict",
        email_from=SENDER,
        postmark_server_token=PM_TOKEN,
        password_reset_hosts=[HOST],
        password_min_length=14,
    )
    factories.make_user(
        app, strict.id, user_id="s1", username="sam", email="s@example.com", password="a" * 14
    )
    token = mailed_token(client, postmark, strict.id, username="sam")
    body = assert_me_error(confirm(client, token, "b" * 13), 400, "INVALID_BODY")
    assert "password" in body.get("fields", {})
    assert sign_in_status(client, strict.id, "sam", "a" * 14) == 200
    assert_ok(confirm(client, token, "b" * 14))
    assert sign_in_status(client, strict.id, "sam", "b" * 14) == 200


def test_an_expired_token_is_invalid(
    app, client, database_url, tmp_path: Path, mail_tenant, joe, postmark, celery_worker
):
    short_lived = variant_app(
        app,
        database_url,
        tmp_path,
        PASSWORD_RESET_TTL="1",
        POSTMARK_API_URL=postmark.url,
        SECRET_KEY=app.config["SECRET_KEY"],
    )
    with short_lived as short:
        short_client = short.test_client()
        token = mailed_token(short_client, postmark, mail_tenant.id, email="joe@example.com")
        time.sleep(2)  # the token's age must exceed its one-second lifetime
        assert_me_error(confirm(short_client, token), 400, "INVALID_TOKEN")
        assert_me_error(confirm(client, token), 400, "INVALID_TOKEN")
    assert sign_in_status(client, mail_tenant.id, "joe", PASSWORD) == 200
    # A token minted with the normal lifetime still works for the same user.
    assert_ok(confirm(client, mailed_token(client, postmark, mail_tenant.id, username="joe")))


# --- rate limits ----------------------------------------------------------------------------


def test_requests_are_limited_per_address(app, database_url, tmp_path: Path, mail_tenant):
    limited = rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_RESET_PER_ADDRESS="2 per hour"
    )
    with limited as app2:
        client = app2.test_client()
        assert_ok(ask_reset(client, mail_tenant.id, email="who@example.com"))
        assert_ok(ask_reset(client, mail_tenant.id, email="WHO@example.com"))
        response = ask_reset(client, mail_tenant.id, email="who@example.com")
        assert_me_error(response, 429, "RATE_LIMITED")
        assert int(response.headers["Retry-After"]) > 0
        assert_ok(ask_reset(client, mail_tenant.id, email="other@example.com"))
        assert_ok(ask_reset(client, mail_tenant.id, username="who"))


def test_requests_are_limited_per_ip(app, database_url, tmp_path: Path, mail_tenant):
    with rate_limited_app(app, database_url, tmp_path, RATELIMIT_RESET_PER_IP="3 per hour") as a:
        client = a.test_client()
        for n in range(3):
            assert_ok(ask_reset(client, mail_tenant.id, email=f"n{n}@example.com"))
        response = ask_reset(client, mail_tenant.id, email="n9@example.com")
        assert_me_error(response, 429, "RATE_LIMITED")
        assert int(response.headers["Retry-After"]) > 0
