"""The webhook endpoints' API on the platform surface: the create answer's fields and its
secret (never shown again), who may call it (root key, a tenant key with manage:webhooks;
404 for another tenant's key or ids), bad input refused in the platform's error shape,
registering and changing an endpoint never contacting it, a disabled endpoint refusing
/test, the delivery log's cursor paging, and the OpenAPI document's webhook routes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.webhooks.events import EVENT_TYPES
from tests import factories
from tests.factories import PASSWORD, TenantHandle, assert_surface_error, table_counts
from tests.webhook_receiver import Receiver
from tests.webhooks.support import ROOT, register

FIELDS = {"id", "url", "event_types", "enabled", "description"}


@pytest.fixture()
def hooked(app: Flask) -> TenantHandle:
    return factories.make_tenant(app, "hooked", scopes=["*"])


def base(tenant_id: str) -> str:
    return f"/tenants/{tenant_id}/webhooks"


def messages(client: FlaskClient, tenant_id: str, wid: str, **query: Any) -> dict[str, Any]:
    response = client.get(f"{base(tenant_id)}/{wid}/messages", query_string=query, headers=ROOT)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def bearer_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- create, read, change, delete -----------------------------------------------------------


def test_create_answers_every_field_and_the_secret_only_once(
    client: FlaskClient, hooked: TenantHandle, receiver: Receiver
) -> None:
    created = register(
        client,
        hooked.id,
        receiver.url,
        event_types=["user.created", "user.deleted"],
        description="CRM sync",
    )
    assert FIELDS | {"secret"} <= created.keys()
    assert created["id"].startswith("wh_")
    assert created["url"] == receiver.url
    assert created["event_types"] == ["user.created", "user.deleted"]
    assert created["enabled"] is True
    assert created["description"] == "CRM sync"
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 20
    path = f"{base(hooked.id)}/{created['id']}"

    got = client.get(path, headers=ROOT)
    assert got.status_code == 200
    assert "secret" not in got.get_json()
    assert {k: got.get_json()[k] for k in FIELDS} == {k: created[k] for k in FIELDS}
    listed = client.get(base(hooked.id), headers=ROOT)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.get_json()] == [created["id"]]
    assert all("secret" not in item for item in listed.get_json())
    # Nor does any read hold the secret's value under another name.
    for answer in (got, listed):
        assert created["secret"] not in answer.get_data(as_text=True)

    patched = client.patch(
        path,
        json={"description": "CRM", "event_types": [], "enabled": False},
        headers=ROOT,
    )
    assert patched.status_code == 200, patched.get_data(as_text=True)
    body = patched.get_json()
    assert "secret" not in body and created["secret"] not in patched.get_data(as_text=True)
    assert (body["description"], body["event_types"], body["enabled"]) == ("CRM", [], False)
    assert client.get(path, headers=ROOT).get_json()["enabled"] is False

    rotated = client.post(f"{path}/rotate-secret", headers=ROOT)
    assert rotated.status_code == 200, rotated.get_data(as_text=True)
    new_secret = rotated.get_json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != created["secret"]
    assert "secret" not in client.get(path, headers=ROOT).get_json()

    deleted = client.delete(path, headers=ROOT)
    assert deleted.status_code == 204
    assert_surface_error(client.get(path, headers=ROOT), 404, "platform", "webhook_not_found")
    assert client.get(base(hooked.id), headers=ROOT).get_json() == []


def test_create_defaults(client: FlaskClient, hooked: TenantHandle, receiver: Receiver) -> None:
    created = register(client, hooked.id, receiver.url)
    assert (created["event_types"], created["enabled"], created["description"]) == ([], True, "")


# --- who may call ---------------------------------------------------------------------------


def test_a_tenant_key_with_manage_webhooks_may_and_others_may_not(
    app: Flask, client: FlaskClient, hooked: TenantHandle, receiver: Receiver
) -> None:
    manager = factories.make_key(app, hooked.id, ["manage:webhooks"])
    reader = factories.make_key(app, hooked.id, ["read:users"])
    created = client.post(base(hooked.id), json={"url": receiver.url}, headers=bearer_key(manager))
    assert created.status_code == 201, created.get_data(as_text=True)
    wid = created.get_json()["id"]
    assert client.get(base(hooked.id), headers=bearer_key(manager)).status_code == 200
    assert client.get(f"{base(hooked.id)}/{wid}", headers={"X-APIKEY": manager}).status_code == 200

    for method, path in [
        ("GET", base(hooked.id)),
        ("POST", base(hooked.id)),
        ("GET", f"{base(hooked.id)}/{wid}"),
        ("PATCH", f"{base(hooked.id)}/{wid}"),
        ("DELETE", f"{base(hooked.id)}/{wid}"),
        ("POST", f"{base(hooked.id)}/{wid}/rotate-secret"),
        ("POST", f"{base(hooked.id)}/{wid}/test"),
        ("GET", f"{base(hooked.id)}/{wid}/messages"),
    ]:
        body = {"url": receiver.url} if method in ("POST", "PATCH") else None
        answer = client.open(path, method=method, json=body, headers=bearer_key(reader))
        assert_surface_error(answer, 403, "platform", "insufficient_scope")
    assert client.get(f"{base(hooked.id)}/{wid}", headers=ROOT).status_code == 200


def test_a_user_token_is_refused(
    app: Flask, client: FlaskClient, hooked: TenantHandle, receiver: Receiver
) -> None:
    factories.make_user(app, hooked.id, user_id="joe", username="joe", password=PASSWORD)
    token = factories.sign_in(client, hooked.id, "joe")["access_token"]
    answer = client.post(base(hooked.id), json={"url": receiver.url}, headers=bearer_key(token))
    assert_surface_error(answer, 403, "platform", "api_key_required")
    answer = client.get(base(hooked.id), headers=bearer_key(token))
    assert_surface_error(answer, 403, "platform", "api_key_required")


def test_another_tenants_key_and_ids_are_not_found(
    app: Flask, client: FlaskClient, hooked: TenantHandle, receiver: Receiver
) -> None:
    other = factories.make_tenant(app, "other", scopes=["*"])
    mine = register(client, hooked.id, receiver.url)
    theirs = register(client, other.id, receiver.url)
    # Another tenant's key (with every scope) on this tenant's path.
    for method, path in [
        ("GET", base(hooked.id)),
        ("POST", base(hooked.id)),
        ("GET", f"{base(hooked.id)}/{mine['id']}"),
        ("DELETE", f"{base(hooked.id)}/{mine['id']}"),
        ("POST", f"{base(hooked.id)}/{mine['id']}/rotate-secret"),
    ]:
        body = {"url": receiver.url} if method == "POST" else None
        answer = client.open(path, method=method, json=body, headers=bearer_key(other.key))
        assert_surface_error(answer, 404, "platform", "tenant_not_found")
    # The right tenant in the path, another tenant's endpoint id: root key and own key.
    for headers in (ROOT, bearer_key(hooked.key)):
        path = f"{base(hooked.id)}/{theirs['id']}"
        for method, suffix, body in [
            ("GET", "", None),
            ("PATCH", "", {"description": "mine now"}),
            ("DELETE", "", None),
            ("POST", "/rotate-secret", None),
            ("POST", "/test", None),
            ("GET", "/messages", None),
            ("POST", "/messages/msg_x/replay", None),
        ]:
            answer = client.open(path + suffix, method=method, json=body, headers=headers)
            assert_surface_error(answer, 404, "platform", "webhook_not_found")
    # Untouched in its own tenant.
    kept = client.get(f"{base(other.id)}/{theirs['id']}", headers=ROOT).get_json()
    assert kept["description"] == ""
    assert client.get(base(hooked.id), headers=ROOT).get_json()[0]["id"] == mine["id"]


def test_unknown_message_and_unknown_tenant_are_not_found(
    client: FlaskClient, hooked: TenantHandle, receiver: Receiver
) -> None:
    wid = register(client, hooked.id, receiver.url)["id"]
    answer = client.post(f"{base(hooked.id)}/{wid}/messages/msg_nothing/replay", headers=ROOT)
    assert_surface_error(answer, 404, "platform", "webhook_message_not_found")
    answer = client.post(base("no-such-tenant"), json={"url": receiver.url}, headers=ROOT)
    assert_surface_error(answer, 404, "platform", "tenant_not_found")
    assert_surface_error(
        client.get(base("no-such-tenant"), headers=ROOT), 404, "platform", "tenant_not_found"
    )
    assert client.get(f"{base('no-such-tenant')}/{wid}", headers=ROOT).status_code == 404


# --- bad input ------------------------------------------------------------------------------

BAD_BODIES = {
    "missing url": {"description": "x"},
    "url not a string": {"url": 42},
    "url of 10k characters": {"url": "http://127.0.0.1/" + "a" * 10_000},
    "unknown event type": {"url": "http://127.0.0.1:9/h", "event_types": ["user.exploded"]},
    "event_types not a list": {"url": "http://127.0.0.1:9/h", "event_types": "user.created"},
    "unknown field": {"url": "http://127.0.0.1:9/h", "secret": "whsec_mine"},
    "enabled not a boolean": {"url": "http://127.0.0.1:9/h", "enabled": "yes"},
    "description too long": {"url": "http://127.0.0.1:9/h", "description": "d" * 256},
    "body is a list": ["http://127.0.0.1:9/h"],
}
BAD_TEXT = {
    "NUL in url": '{"url": "http://127.0.0.1:9/h\\u0000"}',
    "NUL in description": '{"url": "http://127.0.0.1:9/h", "description": "a\\u0000b"}',
    "lone surrogate": '{"url": "http://127.0.0.1:9/h", "description": "\\ud800"}',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_create_bodies_are_400_and_store_nothing(
    app: Flask, client: FlaskClient, hooked: TenantHandle, body: Any
) -> None:
    before = table_counts(app)
    answer = client.post(base(hooked.id), json=body, headers=ROOT)
    assert_surface_error(answer, 400, "platform", "validation_failed")
    assert table_counts(app) == before


@pytest.mark.parametrize("raw", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_nul_and_surrogates_are_400(
    app: Flask, client: FlaskClient, hooked: TenantHandle, receiver: Receiver, raw: str
) -> None:
    wid = register(client, hooked.id, receiver.url)["id"]
    before = table_counts(app)
    headers = {**ROOT, "Content-Type": "application/json"}
    for method, path in [("POST", base(hooked.id)), ("PATCH", f"{base(hooked.id)}/{wid}")]:
        answer = client.open(path, method=method, data=raw, headers=headers)
        assert_surface_error(answer, 400, "platform", "invalid_characters")
    assert table_counts(app) == before


def test_bad_patch_bodies_change_nothing(
    client: FlaskClient, hooked: TenantHandle, receiver: Receiver
) -> None:
    created = register(client, hooked.id, receiver.url, event_types=["user.created"])
    path = f"{base(hooked.id)}/{created['id']}"
    for body in (
        {"url": None},
        {"url": 42},
        {"url": "x" * 10_000},
        {"event_types": ["nope"]},
        {"event_types": "user.created"},
        {"id": "wh_other"},
        {"secret": "whsec_mine"},
    ):
        answer = client.patch(path, json=body, headers=ROOT)
        assert_surface_error(answer, 400, "platform", "validation_failed")
    after = client.get(path, headers=ROOT).get_json()
    assert {k: after[k] for k in FIELDS} == {k: created[k] for k in FIELDS}


def test_refused_urls_are_400_invalid_webhook_url(
    app: Flask,
    client: FlaskClient,
    hooked: TenantHandle,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for url in ("ftp://127.0.0.1/h", "not a url", "http:///nohost"):
        answer = client.post(base(hooked.id), json={"url": url}, headers=ROOT)
        assert_surface_error(answer, 400, "platform", "invalid_webhook_url")
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
    answer = client.post(base(hooked.id), json={"url": receiver.url}, headers=ROOT)
    assert_surface_error(answer, 400, "platform", "invalid_webhook_url")
    assert client.get(base(hooked.id), headers=ROOT).get_json() == []


def test_a_huge_body_is_413(app: Flask, client: FlaskClient, hooked: TenantHandle) -> None:
    before = table_counts(app)
    body = {"url": "http://127.0.0.1:9/h", "description": "d" * (2 * 1024 * 1024)}
    answer = client.post(base(hooked.id), json=body, headers=ROOT)
    assert_surface_error(answer, 413, "platform", "payload_too_large")
    assert table_counts(app) == before


# --- contacting the target ------------------------------------------------------------------


def test_registering_and_changing_never_contact_the_target(
    client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    created = register(client, hooked.id, receiver.url)
    path = f"{base(hooked.id)}/{created['id']}"
    other = Receiver().start()
    try:
        for body in (
            {"description": "again"},
            {"url": other.url},
            {"event_types": ["user.created"]},
            {"enabled": False},
            {"enabled": True},
            {"url": receiver.url},
        ):
            assert client.patch(path, json=body, headers=ROOT).status_code == 200
        assert client.post(f"{path}/rotate-secret", headers=ROOT).status_code == 200
        # Only /test sends: once it is delivered, nothing else has been (or comes after).
        assert client.post(f"{path}/test", headers=ROOT).status_code == 202
        factories.wait_until(lambda: receiver.requests())
        time.sleep(0.3)
        [request] = receiver.requests()
        assert json.loads(request.body)["type"] == "webhook.test"
        assert other.requests() == []
    finally:
        other.stop()


def test_a_disabled_endpoint_refuses_test_and_is_never_contacted(
    client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    created = register(client, hooked.id, receiver.url, enabled=False)
    path = f"{base(hooked.id)}/{created['id']}"
    assert_surface_error(
        client.post(f"{path}/test", headers=ROOT), 409, "platform", "webhook_disabled"
    )
    made = client.post(
        "/api/v2/users",
        json={
            "connection": "Username-Password-Authentication",
            "user_id": "dora",
            "password": PASSWORD,
        },
        headers=bearer_key(hooked.key),
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    time.sleep(0.3)
    assert messages(client, hooked.id, created["id"]) == {"items": [], "next_cursor": None}
    assert receiver.requests() == []


# --- the delivery log -----------------------------------------------------------------------


def test_the_delivery_log_pages_by_cursor_and_filters_by_status(
    app: Flask,
    client: FlaskClient,
    celery_worker: Any,
    hooked: TenantHandle,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_RETRY_SCHEDULE", [0, 0])
    wid = register(client, hooked.id, receiver.url)["id"]
    path = f"{base(hooked.id)}/{wid}"
    receiver.answer_with(500, 500, 500)
    first = client.post(f"{path}/test", headers=ROOT).get_json()
    assert factories.wait_until(
        lambda: messages(client, hooked.id, wid)["items"][0]["status"] == "failed"
    )
    sent = [client.post(f"{path}/test", headers=ROOT) for _ in range(2)]
    assert [answer.status_code for answer in sent] == [202, 202]
    ids = [first["id"], *(answer.get_json()["id"] for answer in sent)]
    assert factories.wait_until(
        lambda: len(messages(client, hooked.id, wid, status="delivered")["items"]) == 2
    )

    page = messages(client, hooked.id, wid, limit=1)
    assert [item["id"] for item in page["items"]] == [ids[2]]  # newest first
    assert page["next_cursor"]
    second = messages(client, hooked.id, wid, limit=1, cursor=page["next_cursor"])
    assert [item["id"] for item in second["items"]] == [ids[1]]
    third = messages(client, hooked.id, wid, limit=1, cursor=second["next_cursor"])
    assert [item["id"] for item in third["items"]] == [ids[0]]
    assert third["next_cursor"] is None  # the last page says so

    [failed] = messages(client, hooked.id, wid, status="failed")["items"]
    assert failed["id"] == ids[0]
    assert (failed["attempts"], failed["last_status_code"]) == (3, 500)
    assert failed["event_type"] == "webhook.test" and failed["next_attempt_at"] is None
    delivered = messages(client, hooked.id, wid, status="delivered")["items"]
    assert [item["id"] for item in delivered] == [ids[2], ids[1]]
    assert all(item["attempts"] == 1 and item["last_status_code"] == 204 for item in delivered)
    assert messages(client, hooked.id, wid, status="pending")["items"] == []
    for query in ({"status": "lost"}, {"limit": 0}, {"limit": 101}):
        answer = client.get(f"{path}/messages", query_string=query, headers=ROOT)
        assert_surface_error(answer, 400, "platform", "validation_failed")
    forged = client.get(f"{path}/messages", query_string={"cursor": "forged"}, headers=ROOT)
    assert_surface_error(forged, 400, "platform", "invalid_cursor")
    assert {r.webhook_id for r in receiver.requests()} == set(ids)


# --- the OpenAPI document -------------------------------------------------------------------


def test_the_openapi_document_describes_every_webhook_route(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    endpoints = "/tenants/{tenant_id}/webhooks"
    one = endpoints + "/{webhook_id}"
    expected = {
        (endpoints, "post"): "201",
        (endpoints, "get"): "200",
        (one, "get"): "200",
        (one, "patch"): "200",
        (one, "delete"): "204",
        (one + "/rotate-secret", "post"): "200",
        (one + "/test", "post"): "202",
        (one + "/messages", "get"): "200",
        (one + "/messages/{message_id}/replay", "post"): "202",
    }
    schemas = spec["components"]["schemas"]

    def resolved(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schemas[node["$ref"].rsplit("/", 1)[1]]
        if node.get("type") == "array":
            return resolved(node["items"])
        return node

    for (path, method), status in expected.items():
        operation = paths[path][method]
        assert operation.get("summary") or operation.get("description"), (path, method)
        assert operation["security"], (path, method)
        responses = operation["responses"]
        assert status in responses, (path, method, responses.keys())
        if status != "204":
            schema = resolved(responses[status]["content"]["application/json"]["schema"])
            assert schema["properties"], (path, method)
        for error in ("401", "403", "404"):
            assert error in responses, (path, method, error)

    created = resolved(
        paths[endpoints]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    )
    assert FIELDS | {"secret"} <= created["properties"].keys()
    read = resolved(paths[one]["get"]["responses"]["200"]["content"]["application/json"]["schema"])
    assert FIELDS <= read["properties"].keys() and "secret" not in read["properties"]
    listed = resolved(
        paths[endpoints]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    )
    assert "secret" not in listed["properties"]
    for path, method in ((endpoints, "post"), (one, "patch")):
        body = resolved(paths[path][method]["requestBody"]["content"]["application/json"]["schema"])
        assert {"url", "event_types", "enabled", "description"} <= body["properties"].keys()
        assert set(resolved(body["properties"]["event_types"])["enum"]) == set(EVENT_TYPES)
    assert "url" in resolved(
        paths[endpoints]["post"]["requestBody"]["content"]["application/json"]["schema"]
    ).get("required", [])
    page = resolved(
        paths[one + "/messages"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    )
    assert {"items", "next_cursor"} <= page["properties"].keys()
    item = resolved(page["properties"]["items"])
    assert {
        "id",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
    } <= item["properties"].keys()
    query = {p["name"] for p in paths[one + "/messages"]["get"]["parameters"] if p["in"] == "query"}
    assert {"status", "limit", "cursor"} <= query
