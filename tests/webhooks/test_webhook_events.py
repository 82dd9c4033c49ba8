"""Webhook events raised by the real HTTP surfaces and delivered by the real worker to a
loopback receiver, every delivery verified with the official `standardwebhooks` package:
each event type of issue 26 from the change that raises it, bodies that show the user as
the management surface does and hold no password, hash, token or secret, the event_types
filter, rolled-back changes sending nothing, tenant isolation, secret rotation (two
signatures during the grace period, one after) and the replay of a failed message."""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests import factories
from tests.account_support import account_page, account_sign_in, browser_client, post_form
from tests.conftest import ROOT_KEY
from tests.factories import PASSWORD, TenantHandle, bearer, totp_code
from tests.oauth_support import audit_events
from tests.postmark_fake import FakePostmark
from tests.webhook_receiver import Received, Receiver, verify
from tests.webhooks.support import ROOT, register

NEW_PASSWORD = "a brand new staple 42"
RESET_HOST = "app.example.com"
RESET_LINK = re.compile(r"https://app\.example\.com/reset-password\?token=([^\s\"'<>&]+)")
VERIFY_LINK = re.compile(r"http://gatehouse\.test/verify-email\?token=([^\s\"'<>&]+)")
# What no body may hold, whatever the event: a password hash's marks.
HASH_MARKS = ("argon2", "$gh-foreign$", "password_hash")


@pytest.fixture()
def hooked(app: Flask) -> TenantHandle:
    return factories.make_tenant(
        app,
        "hooked",
        scopes=["*"],
        email_from="noreply@example.com",
        postmark_server_token="pm-token-1",
        password_reset_hosts=[RESET_HOST],
    )


def key_headers(tenant: TenantHandle) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.key}"}


def create_user(client: FlaskClient, tenant: TenantHandle, user_id: str, **fields: Any) -> None:
    response = client.post(
        "/api/v2/users",
        json={
            "connection": "Username-Password-Authentication",
            "user_id": user_id,
            "username": user_id,
            "email": f"{user_id}@example.com",
            "password": PASSWORD,
            **fields,
        },
        headers=key_headers(tenant),
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def patch_user(client: FlaskClient, tenant: TenantHandle, user_id: str, **fields: Any) -> Any:
    return client.patch(f"/api/v2/users/{user_id}", json=fields, headers=key_headers(tenant))


def received(receiver: Receiver, count: int) -> list[Received]:
    """Wait for `count` requests; fail on fewer (and, after a short while, on more)."""
    found = factories.wait_until(lambda: len(receiver.requests()) >= count)
    assert found, [json.loads(r.body)["type"] for r in receiver.requests()]
    time.sleep(0.1)  # a stray extra delivery would arrive by now
    requests = receiver.requests()
    assert len(requests) == count, [json.loads(r.body)["type"] for r in requests]
    return requests


def payloads(receiver: Receiver, count: int, secret: str) -> list[dict[str, Any]]:
    """The first `count` deliveries, each verified with `standardwebhooks`."""
    return [verify(request, secret) for request in received(receiver, count)]


def next_event(receiver: Receiver, secret: str, count: int) -> dict[str, Any]:
    """The `count`-th delivery (verified): the event the last change raised."""
    return payloads(receiver, count, secret)[-1]


def assert_shape(payload: dict[str, Any], event_type: str, tenant: TenantHandle) -> None:
    assert set(payload) == {"type", "timestamp", "data"}, payload
    assert payload["type"] == event_type
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", payload["timestamp"]), payload
    assert payload["data"]["tenant"] == {"id": tenant.id}
    assert isinstance(payload["data"]["actor"], str) and payload["data"]["actor"]


def assert_user(payload: dict[str, Any], user_id: str) -> dict[str, Any]:
    """The body's user is the management surface's shape of `user_id`."""
    user = payload["data"]["user"]
    assert user["user_id"] == user_id
    assert {"email", "email_verified", "username", "identities", "blocked"} <= user.keys()
    assert not {"password", "password_hash", "hash"} & user.keys()
    return user


def assert_no_secrets(receiver: Receiver, *values: str) -> None:
    """No raw body holds any of `values` (passwords, keys, secrets, tokens) or a hash."""
    for request in receiver.requests():
        text = request.body.decode()
        for value in (*values, *HASH_MARKS):
            assert value not in text, (value, text)


def types_of(receiver: Receiver, count: int, secret: str) -> list[str]:
    """The types of the first `count` deliveries (each verified)."""
    return [payload["type"] for payload in payloads(receiver, count, secret)]


def log(client: FlaskClient, tenant_id: str, wid: str) -> list[dict[str, Any]]:
    response = client.get(f"/tenants/{tenant_id}/webhooks/{wid}/messages", headers=ROOT)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["items"]


# --- each event from its change -------------------------------------------------------------


def test_user_changes_through_the_management_api(
    client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    endpoint = register(client, hooked.id, receiver.url)
    secret = endpoint["secret"]

    create_user(client, hooked, "alice", given_name="Alice")
    created = next_event(receiver, secret, 1)
    assert_shape(created, "user.created", hooked)
    user = assert_user(created, "alice")
    assert (user["email"], user["given_name"], user["blocked"]) == (
        "alice@example.com",
        "Alice",
        False,
    )
    assert created["data"]["actor"].startswith("api_key:")

    assert patch_user(client, hooked, "alice", given_name="Alicia").status_code == 200
    updated = next_event(receiver, secret, 2)
    assert_shape(updated, "user.updated", hooked)
    # The user as the change left it, and what changed.
    assert assert_user(updated, "alice")["given_name"] == "Alicia"
    assert updated["data"]["details"] == {"fields": ["first_name"]}

    assert patch_user(client, hooked, "alice", blocked=True).status_code == 200
    blocked = next_event(receiver, secret, 3)
    assert_shape(blocked, "user.blocked", hooked)
    assert assert_user(blocked, "alice")["blocked"] is True

    assert patch_user(client, hooked, "alice", blocked=False).status_code == 200
    unblocked = next_event(receiver, secret, 4)
    assert_shape(unblocked, "user.unblocked", hooked)
    assert assert_user(unblocked, "alice")["blocked"] is False

    assert patch_user(client, hooked, "alice", password=NEW_PASSWORD).status_code == 200
    changed = next_event(receiver, secret, 5)
    assert_shape(changed, "user.password_changed", hooked)
    assert_user(changed, "alice")

    deleted = client.delete("/api/v2/users/alice", headers=key_headers(hooked))
    assert deleted.status_code == 204
    gone = next_event(receiver, secret, 6)
    assert_shape(gone, "user.deleted", hooked)
    assert gone["data"]["user"]["user_id"] == "alice"

    # Every delivery's webhook-id is its message's id in the log, each delivered once.
    items = log(client, hooked.id, endpoint["id"])
    factories.wait_until(
        lambda: all(m["status"] == "delivered" for m in log(client, hooked.id, endpoint["id"]))
    )
    assert {m["id"] for m in items} == {r.webhook_id for r in receiver.requests()}
    assert len(items) == 6
    assert_no_secrets(receiver, PASSWORD, NEW_PASSWORD, hooked.key, secret, ROOT_KEY)


def test_password_reset_confirmed(
    app: Flask,
    client: FlaskClient,
    celery_worker: Any,
    hooked: TenantHandle,
    receiver: Receiver,
    postmark: FakePostmark,
) -> None:
    factories.make_user(
        app, hooked.id, user_id="joe", username="joe", email="joe@example.com", password=PASSWORD
    )
    endpoint = register(client, hooked.id, receiver.url)
    asked = client.post(
        "/auth/password-reset",
        json={"host": RESET_HOST, "email": "joe@example.com"},
        headers={"X-Tenant-ID": hooked.id},
    )
    assert asked.status_code == 200, asked.get_data(as_text=True)
    mails = factories.wait_until(lambda: postmark.mails())
    assert mails, postmark.received
    token = unquote(RESET_LINK.search(mails[-1].body["TextBody"]).group(1))
    confirmed = client.post(
        "/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)

    [payload] = payloads(receiver, 1, endpoint["secret"])
    assert_shape(payload, "user.password_reset", hooked)
    assert_user(payload, "joe")
    assert_no_secrets(receiver, PASSWORD, NEW_PASSWORD, token, hooked.key, endpoint["secret"])


def test_email_verified(
    app: Flask,
    client: FlaskClient,
    celery_worker: Any,
    hooked: TenantHandle,
    receiver: Receiver,
    postmark: FakePostmark,
) -> None:
    factories.make_user(
        app, hooked.id, user_id="joe", username="joe", email="joe@example.com", password=PASSWORD
    )
    access = factories.sign_in(client, hooked.id, "joe")["access_token"]
    endpoint = register(client, hooked.id, receiver.url)
    asked = client.post("/users/me/verify-email", headers=bearer(access))
    assert asked.status_code == 200, asked.get_data(as_text=True)
    mails = factories.wait_until(lambda: postmark.mails())
    assert mails, postmark.received
    token = unquote(VERIFY_LINK.search(html.unescape(mails[-1].body["TextBody"])).group(1))
    assert client.get("/verify-email", query_string={"token": token}).status_code == 200

    [payload] = payloads(receiver, 1, endpoint["secret"])
    assert_shape(payload, "user.email_verified", hooked)
    assert assert_user(payload, "joe")["email_verified"] is True
    assert payload["data"]["actor"] == "user:joe"
    assert_no_secrets(receiver, PASSWORD, token, access, hooked.key, endpoint["secret"])


def test_mfa_enrolled_and_removed(
    app: Flask, client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    factories.make_user(app, hooked.id, user_id="tess", username="tess", password=PASSWORD)
    access = factories.sign_in(client, hooked.id, "tess")["access_token"]
    endpoint = register(client, hooked.id, receiver.url)
    started = client.post("/users/me/mfa/totp", headers=bearer(access))
    assert started.status_code == 201, started.get_data(as_text=True)
    totp_secret = started.get_json()["secret"]
    code = totp_code(totp_secret)
    confirmed = client.post(
        "/users/me/mfa/totp/confirm", json={"code": code}, headers=bearer(access)
    )
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    enrolled = next_event(receiver, endpoint["secret"], 1)
    assert_shape(enrolled, "user.mfa_enrolled", hooked)
    assert_user(enrolled, "tess")

    removed = client.delete(
        "/api/v2/users/tess/multifactor/google-authenticator", headers=key_headers(hooked)
    )
    assert removed.status_code == 204, removed.get_data(as_text=True)
    gone = next_event(receiver, endpoint["secret"], 2)
    assert_shape(gone, "user.mfa_removed", hooked)
    assert_user(gone, "tess")
    assert gone["data"]["target"] == enrolled["data"]["target"]
    assert_no_secrets(receiver, PASSWORD, totp_secret, access, hooked.key, endpoint["secret"])


def test_identity_linked(
    app: Flask, client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    for name in ("prim", "sec"):
        factories.make_user(
            app,
            hooked.id,
            user_id=name,
            username=name,
            email=f"{name}@example.com",
            password=PASSWORD,
        )
    endpoint = register(client, hooked.id, receiver.url, event_types=["user.identity_linked"])
    linked = client.post(
        "/api/v2/users/prim/identities",
        json={"provider": "gatehouse", "user_id": "sec"},
        headers=key_headers(hooked),
    )
    assert linked.status_code == 201, linked.get_data(as_text=True)
    [payload] = payloads(receiver, 1, endpoint["secret"])
    assert_shape(payload, "user.identity_linked", hooked)
    user = assert_user(payload, "prim")
    assert [i["user_id"] for i in user["identities"]] == ["prim", "sec"]
    assert payload["data"]["target"] == "gatehouse|sec"
    assert_no_secrets(receiver, PASSWORD, hooked.key, endpoint["secret"])


def test_session_revoked_on_the_account_page(
    app: Flask, client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    factories.make_user(
        app,
        hooked.id,
        user_id="alice-1",
        username="alice",
        email="alice@example.com",
        email_verified=True,
        password=PASSWORD,
    )
    api = factories.sign_in(client, hooked.id, "alice")
    browser = browser_client(app)
    assert account_sign_in(browser, hooked.id).status_code in (302, 303)
    endpoint = register(client, hooked.id, receiver.url)
    page = account_page(browser, hooked.id)
    assert page.status_code == 200
    ended = post_form(browser, page, "/account/sessions/sign-out-others")
    assert ended.status_code == 303, ended.get_data(as_text=True)

    [payload] = payloads(receiver, 1, endpoint["secret"])
    assert_shape(payload, "session.revoked", hooked)
    assert_user(payload, "alice-1")
    assert payload["data"]["actor"] == "user:alice-1"
    assert payload["data"]["details"] == {"sessions_ended": 1}
    assert_no_secrets(
        receiver,
        PASSWORD,
        api["access_token"],
        api["refresh_token"],
        hooked.key,
        endpoint["secret"],
    )


def test_application_created_and_deleted(
    client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    endpoint = register(client, hooked.id, receiver.url)
    created = client.post(
        f"/tenants/{hooked.id}/applications",
        json={
            "name": "Notes",
            "type": "confidential",
            "redirect_uris": ["https://notes.example.com/callback"],
        },
        headers=ROOT,
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    application = created.get_json()
    made = next_event(receiver, endpoint["secret"], 1)
    assert_shape(made, "application.created", hooked)
    assert made["data"]["target"] == application["client_id"]
    assert "user" not in made["data"]

    deleted = client.delete(
        f"/tenants/{hooked.id}/applications/{application['client_id']}", headers=ROOT
    )
    assert deleted.status_code == 204, deleted.get_data(as_text=True)
    gone = next_event(receiver, endpoint["secret"], 2)
    assert_shape(gone, "application.deleted", hooked)
    assert gone["data"]["target"] == application["client_id"]
    assert_no_secrets(
        receiver, application["client_secret"], ROOT_KEY, hooked.key, endpoint["secret"]
    )


# --- which endpoints get what ---------------------------------------------------------------


def test_an_endpoint_gets_only_the_types_it_subscribed(
    client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    everything = Receiver().start()
    try:
        only = register(client, hooked.id, receiver.url, event_types=["user.deleted"])
        every = register(client, hooked.id, everything.url)
        create_user(client, hooked, "bob")
        assert patch_user(client, hooked, "bob", nickname="bobby").status_code == 200
        assert client.delete("/api/v2/users/bob", headers=key_headers(hooked)).status_code == 204

        assert sorted(types_of(everything, 3, every["secret"])) == [
            "user.created",
            "user.deleted",
            "user.updated",
        ]
        [payload] = payloads(receiver, 1, only["secret"])
        assert payload["type"] == "user.deleted"
        assert [m["event_type"] for m in log(client, hooked.id, only["id"])] == ["user.deleted"]
    finally:
        everything.stop()


def test_a_rolled_back_change_sends_nothing(
    app: Flask, client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    create_user(client, hooked, "ann")
    create_user(client, hooked, "ben")
    endpoint = register(client, hooked.id, receiver.url)
    # The change is audited (user.updated) before the taken username fails it: 409, and
    # the audit event and its message go with the rolled-back transaction.
    taken = patch_user(client, hooked, "ann", username="ben", given_name="Ann")
    assert taken.status_code == 409, taken.get_data(as_text=True)
    # So does a block that comes with a refused password in the same request.
    refused = patch_user(client, hooked, "ann", blocked=True, password="x")
    assert refused.status_code == 400, refused.get_data(as_text=True)
    assert log(client, hooked.id, endpoint["id"]) == []
    # A later change is sent, alone.
    assert client.delete("/api/v2/users/ben", headers=key_headers(hooked)).status_code == 204
    [payload] = payloads(receiver, 1, endpoint["secret"])
    assert payload["type"] == "user.deleted"
    assert [m["event_type"] for m in log(client, hooked.id, endpoint["id"])] == ["user.deleted"]
    got = client.get("/api/v2/users/ann", headers=key_headers(hooked)).get_json()
    assert (got["username"], got["given_name"], got["blocked"]) == ("ann", None, False)


def test_another_tenants_endpoint_never_gets_this_tenants_events(
    app: Flask, client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    other = factories.make_tenant(app, "other", scopes=["*"])
    theirs = Receiver().start()
    try:
        mine = register(client, hooked.id, receiver.url)
        their_endpoint = register(client, other.id, theirs.url)
        create_user(client, hooked, "carol")
        [payload] = payloads(receiver, 1, mine["secret"])
        assert payload["data"]["tenant"]["id"] == hooked.id
        # The other tenant's own event arrives there, and only it.
        create_user(client, other, "dave")
        [their_payload] = payloads(theirs, 1, their_endpoint["secret"])
        assert their_payload["data"]["tenant"]["id"] == other.id
        assert their_payload["data"]["user"]["user_id"] == "dave"
        assert len(receiver.requests()) == 1
        assert [m["event_type"] for m in log(client, other.id, their_endpoint["id"])] == [
            "user.created"
        ]
    finally:
        theirs.stop()


# --- signing secrets ------------------------------------------------------------------------


def signatures(request: Received) -> list[str]:
    return request.headers["webhook-signature"].split(" ")


def verifies(request: Received, secret: str) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


def test_rotation_signs_with_both_secrets_during_the_grace_period_then_the_new_one(
    app: Flask,
    client: FlaskClient,
    celery_worker: Any,
    hooked: TenantHandle,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = register(client, hooked.id, receiver.url)
    path = f"/tenants/{hooked.id}/webhooks/{endpoint['id']}"
    first = endpoint["secret"]
    assert client.post(f"{path}/test", headers=ROOT).status_code == 202
    [before] = received(receiver, 1)
    assert len(signatures(before)) == 1 and verifies(before, first)

    rotated = client.post(f"{path}/rotate-secret", headers=ROOT)
    assert rotated.status_code == 200
    second = rotated.get_json()["secret"]
    assert client.post(f"{path}/test", headers=ROOT).status_code == 202
    during = received(receiver, 2)[-1]
    assert len(signatures(during)) == 2
    assert all(sig.startswith("v1,") for sig in signatures(during))
    # Each secret alone verifies it: a receiver on either one accepts the message.
    assert verifies(during, first) and verifies(during, second)
    assert not verifies(during, "whsec_" + "A" * 32)

    monkeypatch.setitem(app.config, "WEBHOOK_SECRET_GRACE_SECONDS", 1)
    rotated = client.post(f"{path}/rotate-secret", headers=ROOT)
    third = rotated.get_json()["secret"]
    time.sleep(1.1)  # the grace period of `second` ends
    assert client.post(f"{path}/test", headers=ROOT).status_code == 202
    after = received(receiver, 3)[-1]
    assert len(signatures(after)) == 1
    assert verifies(after, third)
    assert not verifies(after, second) and not verifies(after, first)
    assert_no_secrets(receiver, first, second, third)


# --- replay ---------------------------------------------------------------------------------


def test_a_failed_message_is_replayed_with_the_same_webhook_id(
    app: Flask,
    client: FlaskClient,
    celery_worker: Any,
    hooked: TenantHandle,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_RETRY_SCHEDULE", [0, 0])
    endpoint = register(client, hooked.id, receiver.url)
    receiver.answer_with(500, 500, 500)
    create_user(client, hooked, "erin")
    factories.wait_until(
        lambda: [m["status"] for m in log(client, hooked.id, endpoint["id"])] == ["failed"]
    )
    [message] = log(client, hooked.id, endpoint["id"])
    assert (message["status"], message["attempts"], message["last_status_code"]) == (
        "failed",
        3,
        500,
    )
    assert message["next_attempt_at"] is None
    assert len(received(receiver, 3)) == 3

    replayed = client.post(
        f"/tenants/{hooked.id}/webhooks/{endpoint['id']}/messages/{message['id']}/replay",
        headers=ROOT,
    )
    assert replayed.status_code == 202, replayed.get_data(as_text=True)
    assert replayed.get_json()["id"] == message["id"]
    requests = received(receiver, 4)
    assert {request.webhook_id for request in requests} == {message["id"]}
    # The same body every time, each verified.
    assert len({request.body for request in requests}) == 1
    assert [p["type"] for p in receiver.verified(endpoint["secret"])] == ["user.created"] * 4
    factories.wait_until(lambda: log(client, hooked.id, endpoint["id"])[0]["status"] == "delivered")
    [done] = log(client, hooked.id, endpoint["id"])
    assert (done["id"], done["status"], done["last_status_code"]) == (
        message["id"],
        "delivered",
        204,
    )
    # The replay is in the trail, with who asked for it.
    [audited] = audit_events(client, hooked.headers, "webhook.message_replayed")
    assert (audited["actor"], audited["target"]) == ("root", endpoint["id"])
    assert audited["data"] == {"message_id": message["id"], "event_type": "user.created"}
