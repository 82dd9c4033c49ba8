"""Per-user secrets (the MagicRunez user API): `/user/{id}/secrets`, its metadata, value, ETag
and paging, who may call it, what bad input gets, and that values never leak into bodies or
logs."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.secrets.models import Secret
from tests import factories
from tests.factories import PASSWORD, assert_error, bearer, secret_rows

META_KEYS = {"id", "name", "created_at", "updated_at", "version"}
MAX_BYTES = 64 * 1024
WORKER_TIMEOUT = 10.0


@pytest.fixture()
def client(app, celery_worker) -> Iterator[Any]:
    """The test client; at the end the test waits until the worker has audited every value
    read (exactly once each), so no audit write races the table cleanup."""
    counting = factories.counting_client(app)
    yield counting
    written = factories.wait_for_value_read_audits(app, counting.value_reads)
    assert written == counting.value_reads


@pytest.fixture()
def alice(app, tenant) -> str:
    return factories.make_user(app, tenant.id, user_id="alice", username="alice", password=PASSWORD)


@pytest.fixture()
def bob(app, tenant) -> str:
    return factories.make_user(app, tenant.id, user_id="bob", username="bob", password=PASSWORD)


def url(user_id: str, secret_id: str | None = None, tail: str = "") -> str:
    base = f"/user/{user_id}/secrets"
    return f"{base}/{secret_id}{tail}" if secret_id else base


def create(client, headers, user_id: str, name: str, value: str) -> dict[str, Any]:
    response = client.post(url(user_id), json={"name": name, "value": value}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def read_value(client, headers, user_id: str, secret_id: str) -> str:
    response = client.get(url(user_id, secret_id, "/value"), headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def token_of(client, tenant, username: str) -> dict[str, str]:
    return bearer(factories.sign_in(client, tenant.id, username, PASSWORD)["access_token"])


def stored(app, tenant_id: str, secret_id: str) -> Secret:
    with app.app_context(), tenant_scope(tenant_id):
        row = db.session.scalar(select(Secret).where(Secret.id == secret_id))
        assert row is not None
        db.session.expunge(row)
        return row


# --- the endpoints with an API key and with the owner's token ------------------------------


@pytest.mark.parametrize("credential", ["api_key", "api_key_without_tenant", "owner_token"])
def test_every_endpoint_works_for_a_key_and_for_the_owner(client, tenant, alice, credential):
    headers = {
        "api_key": tenant.headers,
        "api_key_without_tenant": {"X-APIKEY": tenant.key},
        "owner_token": token_of(client, tenant, "alice"),
    }[credential]

    created = create(client, headers, alice, "db-password", "hunter2")
    assert created.keys() == META_KEYS and created["name"] == "db-password"
    assert created["version"] == 1

    listed = client.get(url(alice), headers=headers)
    assert listed.status_code == 200
    assert listed.get_json() == {"items": [created], "next_cursor": None}

    meta = client.get(url(alice, created["id"]), headers=headers)
    assert meta.status_code == 200 and meta.get_json() == created

    assert read_value(client, headers, alice, created["id"]) == "hunter2"

    put = client.put(url(alice, created["id"]), json={"value": "hunter3"}, headers=headers)
    assert put.status_code == 200, put.get_data(as_text=True)
    assert put.get_json()["version"] == 2
    assert read_value(client, headers, alice, created["id"]) == "hunter3"

    deleted = client.delete(url(alice, created["id"]), headers=headers)
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert_error(client.get(url(alice, created["id"]), headers=headers), 404, "secret_not_found")
    assert client.get(url(alice), headers=headers).get_json()["items"] == []


def test_owner_token_with_another_tenant_header_is_403(app, client, tenant, other_tenant, alice):
    secret = create(client, tenant.headers, alice, "k", "v")
    before = secret_rows(app, tenant.id)
    headers = {**token_of(client, tenant, "alice"), "X-Tenant-ID": other_tenant.id}
    assert_error(client.get(url(alice), headers=headers), 403, "tenant_mismatch")
    assert_error(
        client.get(url(alice, secret["id"], "/value"), headers=headers), 403, "tenant_mismatch"
    )
    assert_error(
        client.post(url(alice), json={"name": "n", "value": "v"}, headers=headers),
        403,
        "tenant_mismatch",
    )
    assert_error(
        client.put(url(alice, secret["id"]), json={"value": "x"}, headers=headers),
        403,
        "tenant_mismatch",
    )
    assert_error(client.delete(url(alice, secret["id"]), headers=headers), 403, "tenant_mismatch")
    assert secret_rows(app, tenant.id) == before
    matching = {**token_of(client, tenant, "alice"), "X-Tenant-ID": tenant.id}
    assert read_value(client, matching, alice, secret["id"]) == "v"


def test_another_users_token_without_read_secrets_is_403(app, client, tenant, alice, bob):
    secret = create(client, tenant.headers, alice, "k", "alice-only")
    before = secret_rows(app, tenant.id)
    headers = token_of(client, tenant, "bob")
    for response in (
        client.get(url(alice), headers=headers),
        client.get(url(alice, secret["id"]), headers=headers),
        client.get(url(alice, secret["id"], "/value"), headers=headers),
        client.post(url(alice), json={"name": "n", "value": "v"}, headers=headers),
        client.put(url(alice, secret["id"]), json={"value": "x"}, headers=headers),
        client.delete(url(alice, secret["id"]), headers=headers),
    ):
        body = assert_error(response, 403, "insufficient_scope")
        assert "alice-only" not in json.dumps(body)
    assert secret_rows(app, tenant.id) == before


def test_an_admin_token_may_read_another_users_secrets(app, client, tenant, alice):
    factories.make_user(
        app,
        tenant.id,
        user_id="root",
        username="boss",
        password=PASSWORD,
        permissions_group="admin",
    )
    secret = create(client, tenant.headers, alice, "k", "for-admins")
    headers = token_of(client, tenant, "boss")
    listed = client.get(url(alice), headers=headers)
    assert listed.status_code == 200 and listed.get_json()["items"] == [secret]
    assert client.get(url(alice, secret["id"]), headers=headers).get_json() == secret
    assert read_value(client, headers, alice, secret["id"]) == "for-admins"


def test_key_scopes_are_enforced(app, client, tenant, alice):
    secret = create(client, tenant.headers, alice, "k", "v")
    reader = {"X-APIKEY": factories.make_key(app, tenant.id, ["read:secrets"])}
    current_only = {"X-APIKEY": factories.make_key(app, tenant.id, ["read:current_user_secrets"])}
    assert client.get(url(alice), headers=reader).status_code == 200
    assert read_value(client, reader, alice, secret["id"]) == "v"
    before = secret_rows(app, tenant.id)
    assert_error(
        client.post(url(alice), json={"name": "n", "value": "v"}, headers=reader),
        403,
        "insufficient_scope",
    )
    assert_error(
        client.put(url(alice, secret["id"]), json={"value": "x"}, headers=reader),
        403,
        "insufficient_scope",
    )
    assert_error(client.delete(url(alice, secret["id"]), headers=reader), 403, "insufficient_scope")
    # A current-user scope means nothing without a user behind the credential.
    assert_error(client.get(url(alice), headers=current_only), 403, "insufficient_scope")
    assert secret_rows(app, tenant.id) == before


def test_no_credential_is_401(client, tenant, alice):
    response = client.get(url(alice), headers={"X-Tenant-ID": tenant.id})
    assert_error(response, 401, "missing_credentials")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- encryption at rest and values -------------------------------------------------------


def test_value_is_encrypted_at_rest(app, client, tenant, alice):
    value = "plain-text-needle-0123456789"
    secret = create(client, tenant.headers, alice, "k", value)
    row = stored(app, tenant.id, secret["id"])
    assert row.value_encrypted.startswith("v1.")
    assert value not in row.value_encrypted
    assert value.encode() not in base64.urlsafe_b64decode(
        row.value_encrypted.split(".", 2)[2] + "=="
    )
    # Two secrets with one value do not share a ciphertext.
    twin = create(client, tenant.headers, alice, "k2", value)
    assert stored(app, tenant.id, twin["id"]).value_encrypted != row.value_encrypted


@pytest.mark.parametrize(
    "value",
    [
        "",
        "héllo wörld — ça va? ñandú",
        "🔑🚀 emoji 👩‍💻",
        "line one\nline two\r\nline three\n",
        "  leading and trailing spaces \t ",
        '{"looks": "like json"}',
        "日本語のテキスト",
    ],
    ids=["empty", "accents", "emoji", "newlines", "spaces", "json-text", "cjk"],
)
def test_value_is_returned_exactly_as_text_plain(client, tenant, alice, value):
    secret = create(client, tenant.headers, alice, "k", value)
    response = client.get(url(alice, secret["id"], "/value"), headers=tenant.headers)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.mimetype_params.get("charset", "utf-8").lower() == "utf-8"
    assert response.get_data() == value.encode("utf-8")


def test_lists_and_metadata_never_contain_the_value(client, tenant, alice):
    value = "needle-value-that-must-not-leak-42"
    replaced = "second-needle-that-must-not-leak-43"
    created = client.post(url(alice), json={"name": "k", "value": value}, headers=tenant.headers)
    secret_id = created.get_json()["id"]
    updated = client.put(url(alice, secret_id), json={"value": replaced}, headers=tenant.headers)
    meta = client.get(url(alice, secret_id), headers=tenant.headers)
    listed = client.get(url(alice), headers=tenant.headers)
    for response in (created, updated, meta):
        assert value not in response.get_data(as_text=True)
        assert replaced not in response.get_data(as_text=True)
        assert response.get_json().keys() == META_KEYS
    assert value not in listed.get_data(as_text=True)
    assert replaced not in listed.get_data(as_text=True)
    assert listed.get_json().keys() == {"items", "next_cursor"}
    assert [item.keys() for item in listed.get_json()["items"]] == [META_KEYS]


# --- audit of value reads, by the real worker ----------------------------------------------


def value_read_events(client, tenant, count: int) -> list[dict[str, Any]]:
    """Poll the audit log until `count` value reads are there (or the deadline passes)."""

    def events() -> list[dict[str, Any]]:
        response = client.get(
            "/audit-events", query_string={"action": "secret.value_read"}, headers=tenant.headers
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["items"]

    def enough() -> list[dict[str, Any]] | None:
        items = events()
        return items if len(items) >= count else None

    return factories.wait_until(enough, WORKER_TIMEOUT) or events()


def test_every_value_read_is_audited_by_the_worker(client, tenant, alice, celery_worker):
    value = "audited-value-do-not-log"
    secret = create(client, tenant.headers, alice, "audited", value)
    owner = token_of(client, tenant, "alice")
    # Neither metadata reads nor failed value reads are value reads.
    assert client.get(url(alice, secret["id"]), headers=tenant.headers).status_code == 200
    assert_error(
        client.get(url(alice, "missing", "/value"), headers=tenant.headers), 404, "secret_not_found"
    )

    for headers, ip in ((tenant.headers, "203.0.113.7"), (owner, "198.51.100.9")):
        response = client.get(
            url(alice, secret["id"], "/value"), headers=headers, environ_base={"REMOTE_ADDR": ip}
        )
        assert response.get_data(as_text=True) == value
    assert read_value(client, tenant.headers, alice, secret["id"]) == value

    events = value_read_events(client, tenant, 3)
    assert len(events) == 3, events
    by_actor = sorted((e["actor"], e["ip"]) for e in events)
    assert by_actor == sorted(
        [
            (f"api_key:{tenant.key_id}", "203.0.113.7"),
            ("user:alice", "198.51.100.9"),
            (f"api_key:{tenant.key_id}", "127.0.0.1"),
        ]
    )
    for event in events:
        assert event["action"] == "secret.value_read"
        assert event["user_id"] == alice
        assert event["target"] == secret["id"]
        assert value not in json.dumps(event)


# --- names ---------------------------------------------------------------------------------


def test_duplicate_name_is_409_but_other_users_may_reuse_it(app, client, tenant, alice, bob):
    first = create(client, tenant.headers, alice, "api-token", "one")
    before = secret_rows(app, tenant.id)
    duplicate = client.post(
        url(alice), json={"name": "api-token", "value": "two"}, headers=tenant.headers
    )
    assert_error(duplicate, 409, "secret_exists")
    assert secret_rows(app, tenant.id) == before
    assert read_value(client, tenant.headers, alice, first["id"]) == "one"

    other = create(client, tenant.headers, bob, "api-token", "bobs")
    assert other["name"] == "api-token" and other["id"] != first["id"]
    assert read_value(client, tenant.headers, bob, other["id"]) == "bobs"


def test_rename_onto_a_taken_name_is_409(app, client, tenant, alice):
    create(client, tenant.headers, alice, "taken", "a")
    moving = create(client, tenant.headers, alice, "free", "b")
    before = secret_rows(app, tenant.id)
    response = client.put(url(alice, moving["id"]), json={"name": "taken"}, headers=tenant.headers)
    assert_error(response, 409, "secret_exists")
    assert secret_rows(app, tenant.id) == before
    renamed = client.put(url(alice, moving["id"]), json={"name": "new"}, headers=tenant.headers)
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "new"
    assert read_value(client, tenant.headers, alice, moving["id"]) == "b"


@pytest.mark.parametrize("length", [1, 128])
def test_names_of_1_to_128_chars_are_accepted(client, tenant, alice, length):
    assert create(client, tenant.headers, alice, "n" * length, "v")["name"] == "n" * length


@pytest.mark.parametrize("length", [0, 129])
def test_names_outside_1_to_128_chars_are_400(app, client, tenant, alice, length):
    secret = create(client, tenant.headers, alice, "ok", "v")
    before = secret_rows(app, tenant.id)
    body = {"name": "n" * length, "value": "v"}
    assert (
        "name"
        in assert_error(
            client.post(url(alice), json=body, headers=tenant.headers), 400, "validation_failed"
        )["fields"]
    )
    put = client.put(url(alice, secret["id"]), json={"name": "n" * length}, headers=tenant.headers)
    assert "name" in assert_error(put, 400, "validation_failed")["fields"]
    assert secret_rows(app, tenant.id) == before


# --- size limits ---------------------------------------------------------------------------


def test_a_64_kib_value_is_accepted_and_read_back(client, tenant, alice):
    value = "x" * MAX_BYTES
    secret = create(client, tenant.headers, alice, "big", value)
    assert read_value(client, tenant.headers, alice, secret["id"]) == value
    multibyte = "€" * (MAX_BYTES // 3 - 1) + "éé"  # 65532 + 4 bytes, far fewer chars
    assert len(multibyte.encode()) == MAX_BYTES
    other = create(client, tenant.headers, alice, "big-utf8", multibyte)
    assert read_value(client, tenant.headers, alice, other["id"]) == multibyte


@pytest.mark.parametrize(
    "value",
    ["x" * (MAX_BYTES + 1), "€" * (MAX_BYTES // 3) + "é", "🔑" * (MAX_BYTES // 4 + 1)],
    ids=["ascii", "mixed-multibyte", "emoji"],
)
def test_a_value_over_64_kib_is_413(app, client, tenant, alice, value):
    assert len(value.encode()) > MAX_BYTES and len(value) <= MAX_BYTES + 1
    secret = create(client, tenant.headers, alice, "small", "small")
    before = secret_rows(app, tenant.id)
    created = client.post(url(alice), json={"name": "big", "value": value}, headers=tenant.headers)
    body = assert_error(created, 413, "secret_too_large")
    assert "65536" in body["message"] or "64 KiB" in body["message"], body
    updated = client.put(url(alice, secret["id"]), json={"value": value}, headers=tenant.headers)
    assert_error(updated, 413, "secret_too_large")
    assert secret_rows(app, tenant.id) == before


# --- ETag / If-Match -----------------------------------------------------------------------


def test_single_resources_carry_an_etag_that_changes_with_the_row(client, tenant, alice):
    created = client.post(url(alice), json={"name": "k", "value": "v"}, headers=tenant.headers)
    secret_id = created.get_json()["id"]
    tag = created.headers["ETag"]
    assert tag
    got = client.get(url(alice, secret_id), headers=tenant.headers)
    assert got.headers["ETag"] == tag
    put = client.put(url(alice, secret_id), json={"value": "v2"}, headers=tenant.headers)
    assert put.status_code == 200 and put.headers["ETag"] != tag
    assert (
        client.get(url(alice, secret_id), headers=tenant.headers).headers["ETag"]
        == (put.headers["ETag"])
    )


def test_put_with_a_stale_if_match_is_412_and_changes_nothing(app, client, tenant, alice):
    created = client.post(url(alice), json={"name": "k", "value": "v1"}, headers=tenant.headers)
    secret_id, stale = created.get_json()["id"], created.headers["ETag"]
    fresh = client.put(
        url(alice, secret_id), json={"value": "v2"}, headers={**tenant.headers, "If-Match": stale}
    )
    assert fresh.status_code == 200, fresh.get_data(as_text=True)
    current = fresh.headers["ETag"]
    assert current != stale
    before = secret_rows(app, tenant.id)

    response = client.put(
        url(alice, secret_id),
        json={"name": "renamed", "value": "v3"},
        headers={**tenant.headers, "If-Match": stale},
    )
    assert_error(response, 412, "etag_mismatch")
    assert secret_rows(app, tenant.id) == before
    assert read_value(client, tenant.headers, alice, secret_id) == "v2"
    meta = client.get(url(alice, secret_id), headers=tenant.headers)
    assert meta.get_json()["name"] == "k" and meta.headers["ETag"] == current

    ok = client.put(
        url(alice, secret_id), json={"value": "v3"}, headers={**tenant.headers, "If-Match": current}
    )
    assert ok.status_code == 200 and ok.headers["ETag"] not in (current, stale)
    assert read_value(client, tenant.headers, alice, secret_id) == "v3"


# --- keyset lists --------------------------------------------------------------------------


def test_pages_follow_next_cursor_in_creation_order(client, tenant, alice):
    ids = [create(client, tenant.headers, alice, f"s{i}", f"v{i}")["id"] for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = client.get(url(alice), query_string=query, headers=tenant.headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        pages += 1
        assert len(body["items"]) == (2 if pages < 3 else 1)
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 3
    assert pages == 3 and seen == ids
    whole = client.get(url(alice), query_string={"limit": 5}, headers=tenant.headers).get_json()
    assert [i["id"] for i in whole["items"]] == ids and whole["next_cursor"] is None
    default = client.get(url(alice), headers=tenant.headers).get_json()
    assert [i["id"] for i in default["items"]] == ids


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"limit": "2.5"},
        {"cursor": "not-a-cursor"},
        {"cursor": "%%%"},
        {"cursor": base64.urlsafe_b64encode(b'{"a":1}').decode()},
        {"cursor": base64.urlsafe_b64encode(b'["yesterday","x"]').decode()},
    ],
    ids=lambda q: "-".join(f"{k}={v}" for k, v in q.items()),
)
def test_bad_limit_or_cursor_is_400(client, tenant, alice, query):
    create(client, tenant.headers, alice, "k", "v")
    assert_error(
        client.get(url(alice), query_string=query, headers=tenant.headers),
        400,
        "invalid_cursor" if "cursor" in query else "validation_failed",
    )


def test_limits_of_1_and_100_are_accepted(client, tenant, alice):
    create(client, tenant.headers, alice, "a", "v")
    create(client, tenant.headers, alice, "b", "v")
    one = client.get(url(alice), query_string={"limit": 1}, headers=tenant.headers)
    assert one.status_code == 200 and len(one.get_json()["items"]) == 1
    assert one.get_json()["next_cursor"]
    hundred = client.get(url(alice), query_string={"limit": 100}, headers=tenant.headers)
    assert hundred.status_code == 200 and len(hundred.get_json()["items"]) == 2


# --- deleting the user ---------------------------------------------------------------------


def test_deleting_the_user_deletes_its_secrets(app, client, tenant, alice, bob):
    create(client, tenant.headers, alice, "a1", "v")
    create(client, tenant.headers, alice, "a2", "v")
    kept = create(client, tenant.headers, bob, "b1", "v")
    response = client.delete(f"/users/{alice}", headers=tenant.headers)
    assert response.status_code == 204, response.get_data(as_text=True)
    assert [(row[0], row[1]) for row in secret_rows(app, tenant.id)] == [(kept["id"], bob)]
    assert_error(client.get(url(alice), headers=tenant.headers), 404, "user_not_found")


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"value": "v"},
        {"name": "k"},
        {},
        {"name": "k", "value": 42},
        {"name": "k", "value": 4.2},
        {"name": "k", "value": True},
        {"name": "k", "value": {"a": 1}},
        {"name": "k", "value": ["a"]},
        {"name": "k", "value": None},
        {"name": 7, "value": "v"},
        {"name": None, "value": "v"},
        {"name": "k", "value": "v", "extra": 1},
    ],
    ids=lambda b: json.dumps(b),
)
def test_bad_create_bodies_are_400(app, client, tenant, alice, body):
    create(client, tenant.headers, alice, "existing", "v")
    before = secret_rows(app, tenant.id)
    error = assert_error(
        client.post(url(alice), json=body, headers=tenant.headers), 400, "validation_failed"
    )
    assert error.get("fields"), error
    assert secret_rows(app, tenant.id) == before


@pytest.mark.parametrize(
    "body",
    [{}, {"value": 1}, {"value": None}, {"value": {"a": "b"}}, {"name": ""}, {"other": "x"}],
    ids=lambda b: json.dumps(b),
)
def test_bad_update_bodies_are_400(app, client, tenant, alice, body):
    secret = create(client, tenant.headers, alice, "existing", "v")
    before = secret_rows(app, tenant.id)
    assert_error(
        client.put(url(alice, secret["id"]), json=body, headers=tenant.headers),
        400,
        "validation_failed",
    )
    assert secret_rows(app, tenant.id) == before


def test_malformed_json_is_400(app, client, tenant, alice):
    headers = {**tenant.headers, "Content-Type": "application/json"}
    assert_error(
        client.post(url(alice), data='{"name": "k", "value":', headers=headers), 400, "invalid_json"
    )
    assert secret_rows(app, tenant.id) == []


def test_unknown_ids_are_404(app, client, tenant, alice, bob):
    secret = create(client, tenant.headers, alice, "k", "alice-value")
    before = secret_rows(app, tenant.id)
    h = tenant.headers
    cases = [
        ("get", url("nobody"), None),
        ("post", url("nobody"), {"name": "k", "value": "v"}),
        ("get", url("nobody", secret["id"]), None),
        ("get", url(alice, "no-such-secret"), None),
        ("get", url(alice, "no-such-secret", "/value"), None),
        ("put", url(alice, "no-such-secret"), {"value": "x"}),
        ("delete", url(alice, "no-such-secret"), None),
        # Alice's secret under Bob's path is not Bob's secret.
        ("get", url(bob, secret["id"]), None),
        ("get", url(bob, secret["id"], "/value"), None),
        ("put", url(bob, secret["id"]), {"value": "x"}),
        ("delete", url(bob, secret["id"]), None),
    ]
    for method, path, body in cases:
        response = getattr(client, method)(path, json=body, headers=h)
        # The collection of an unknown user is the user not found; any one secret is the secret.
        expected = "user_not_found" if path.endswith("/secrets") else "secret_not_found"
        error = assert_error(response, 404, expected)
        assert "alice-value" not in json.dumps(error), (method, path)
    assert secret_rows(app, tenant.id) == before
    assert read_value(client, h, alice, secret["id"]) == "alice-value"


def test_another_tenants_user_and_secret_are_404(app, client, tenant, other_tenant, alice):
    secret = create(client, tenant.headers, alice, "k", "tenant-a-value")
    factories.make_user(app, other_tenant.id, user_id="alice")  # same id in the other tenant
    before = secret_rows(app, tenant.id)
    h = other_tenant.headers
    for method, path, body in [
        ("get", url("alice", secret["id"]), None),
        ("get", url("alice", secret["id"], "/value"), None),
        ("put", url("alice", secret["id"]), {"value": "x"}),
        ("delete", url("alice", secret["id"]), None),
    ]:
        error = assert_error(
            getattr(client, method)(path, json=body, headers=h), 404, "secret_not_found"
        )
        assert "tenant-a-value" not in json.dumps(error)
    assert client.get(url("alice"), headers=h).get_json()["items"] == []
    factories.make_user(app, tenant.id, user_id="only-here")
    assert_error(client.get(url("only-here"), headers=h), 404, "user_not_found")
    assert_error(
        client.post(url("only-here"), json={"name": "k", "value": "v"}, headers=h),
        404,
        "user_not_found",
    )
    assert secret_rows(app, tenant.id) == before
    assert secret_rows(app, other_tenant.id) == []


# --- logs ----------------------------------------------------------------------------------


def test_secret_values_never_reach_the_logs(app, client, tenant, alice, caplog):
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    value, replaced = "log-needle-7f3a9c", "log-needle-second-b21e"

    secret = create(client, tenant.headers, alice, "logged", value)
    assert read_value(client, tenant.headers, alice, secret["id"]) == value
    put = client.put(url(alice, secret["id"]), json={"value": replaced}, headers=tenant.headers)
    assert put.status_code == 200
    assert read_value(client, tenant.headers, alice, secret["id"]) == replaced
    # Failing writes carry the value too.
    dup = client.post(url(alice), json={"name": "logged", "value": value}, headers=tenant.headers)
    assert_error(dup, 409, "secret_exists")
    stale = client.put(
        url(alice, secret["id"]),
        json={"value": value},
        headers={**tenant.headers, "If-Match": '"stale"'},
    )
    assert_error(stale, 412, "etag_mismatch")

    assert caplog.records, "nothing was logged, so the check below would prove nothing"
    for record in caplog.records:
        text = " ".join(
            [record.getMessage(), repr(record.msg), repr(record.args), record.exc_text or ""]
        )
        assert value not in text and replaced not in text, (record.name, text[:300])
