"""Per-user properties (the MagicRunez user API): `/user/{id}/properties`, named JSON values of
any JSON type up to 16 KiB, with ETag, keyset paging, scopes, and bad input that changes
nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests import factories
from tests.factories import PASSWORD, assert_error, bearer, property_rows

SPEC_KEYS = {"id", "name", "value", "created_at", "updated_at"}
MAX_BYTES = 16 * 1024

JSON_VALUES = [
    {"theme": "dark", "sizes": [1, 2.5, -3], "nested": {"on": True, "off": None}},
    [1, "two", {"three": 3}, [], {}],
    "plain string with ünïcödé ✓",
    "",
    0,
    -17,
    3.25,
    12345678901234,
    True,
    False,
    None,
    {},
    [],
]


@pytest.fixture()
def alice(app, tenant) -> str:
    return factories.make_user(app, tenant.id, user_id="alice", username="alice", password=PASSWORD)


@pytest.fixture()
def bob(app, tenant) -> str:
    return factories.make_user(app, tenant.id, user_id="bob", username="bob", password=PASSWORD)


def url(user_id: str, prop_id: str | None = None) -> str:
    base = f"/user/{user_id}/properties"
    return f"{base}/{prop_id}" if prop_id else base


def create(client, headers, user_id: str, name: str, value: Any) -> dict[str, Any]:
    response = client.post(url(user_id), json={"name": name, "value": value}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def token_of(client, tenant, username: str) -> dict[str, str]:
    return bearer(factories.sign_in(client, tenant.id, username, PASSWORD)["access_token"])


# --- the endpoints with an API key and with the owner's token ------------------------------


@pytest.mark.parametrize("credential", ["api_key", "api_key_without_tenant", "owner_token"])
def test_every_endpoint_works_for_a_key_and_for_the_owner(client, tenant, alice, credential):
    headers = {
        "api_key": tenant.headers,
        "api_key_without_tenant": {"X-APIKEY": tenant.key},
        "owner_token": token_of(client, tenant, "alice"),
    }[credential]

    created = create(client, headers, alice, "theme", {"mode": "dark"})
    assert SPEC_KEYS <= created.keys()
    assert created["name"] == "theme" and created["value"] == {"mode": "dark"}

    listed = client.get(url(alice), headers=headers)
    assert listed.status_code == 200
    assert listed.get_json() == {"items": [created], "next_cursor": None}

    got = client.get(url(alice, created["id"]), headers=headers)
    assert got.status_code == 200 and got.get_json() == created

    put = client.put(url(alice, created["id"]), json={"value": ["light"]}, headers=headers)
    assert put.status_code == 200, put.get_data(as_text=True)
    assert put.get_json()["value"] == ["light"] and put.get_json()["name"] == "theme"
    assert client.get(url(alice, created["id"]), headers=headers).get_json() == put.get_json()

    deleted = client.delete(url(alice, created["id"]), headers=headers)
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert_error(client.get(url(alice, created["id"]), headers=headers), 404, "property_not_found")
    assert client.get(url(alice), headers=headers).get_json()["items"] == []


def test_owner_token_with_another_tenant_header_is_403(app, client, tenant, other_tenant, alice):
    prop = create(client, tenant.headers, alice, "k", 1)
    before = property_rows(app, tenant.id)
    headers = {**token_of(client, tenant, "alice"), "X-Tenant-ID": other_tenant.id}
    assert_error(client.get(url(alice), headers=headers), 403, "tenant_mismatch")
    assert_error(client.get(url(alice, prop["id"]), headers=headers), 403, "tenant_mismatch")
    assert_error(
        client.post(url(alice), json={"name": "n", "value": 1}, headers=headers),
        403,
        "tenant_mismatch",
    )
    assert_error(
        client.put(url(alice, prop["id"]), json={"value": 2}, headers=headers),
        403,
        "tenant_mismatch",
    )
    assert_error(client.delete(url(alice, prop["id"]), headers=headers), 403, "tenant_mismatch")
    assert property_rows(app, tenant.id) == before
    matching = {**token_of(client, tenant, "alice"), "X-Tenant-ID": tenant.id}
    assert client.get(url(alice, prop["id"]), headers=matching).get_json() == prop


def test_another_users_token_is_403_and_an_admin_token_is_allowed(app, client, tenant, alice, bob):
    prop = create(client, tenant.headers, alice, "k", {"private": True})
    before = property_rows(app, tenant.id)
    headers = token_of(client, tenant, "bob")
    for response in (
        client.get(url(alice), headers=headers),
        client.get(url(alice, prop["id"]), headers=headers),
        client.post(url(alice), json={"name": "n", "value": 1}, headers=headers),
        client.put(url(alice, prop["id"]), json={"value": 2}, headers=headers),
        client.delete(url(alice, prop["id"]), headers=headers),
    ):
        assert_error(response, 403, "insufficient_scope")
    assert property_rows(app, tenant.id) == before

    factories.make_user(
        app,
        tenant.id,
        user_id="root",
        username="boss",
        password=PASSWORD,
        permissions_group="admin",
    )
    admin = token_of(client, tenant, "boss")
    assert client.get(url(alice), headers=admin).get_json()["items"] == [prop]
    assert client.get(url(alice, prop["id"]), headers=admin).get_json() == prop


def test_key_scopes_are_enforced(app, client, tenant, alice):
    prop = create(client, tenant.headers, alice, "k", 1)
    reader = {"X-APIKEY": factories.make_key(app, tenant.id, ["read:properties"])}
    secrets_only = {"X-APIKEY": factories.make_key(app, tenant.id, ["read:secrets"])}
    assert client.get(url(alice, prop["id"]), headers=reader).get_json() == prop
    before = property_rows(app, tenant.id)
    assert_error(
        client.post(url(alice), json={"name": "n", "value": 1}, headers=reader),
        403,
        "insufficient_scope",
    )
    assert_error(
        client.put(url(alice, prop["id"]), json={"value": 2}, headers=reader),
        403,
        "insufficient_scope",
    )
    assert_error(client.delete(url(alice, prop["id"]), headers=reader), 403, "insufficient_scope")
    assert_error(client.get(url(alice), headers=secrets_only), 403, "insufficient_scope")
    assert property_rows(app, tenant.id) == before


def test_no_credential_is_401(client, tenant, alice):
    response = client.get(url(alice), headers={"X-Tenant-ID": tenant.id})
    assert_error(response, 401, "missing_credentials")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", JSON_VALUES, ids=lambda v: json.dumps(v)[:30])
def test_any_json_value_round_trips(client, tenant, alice, value):
    created = create(client, tenant.headers, alice, "p", value)
    assert created["value"] == value and type(created["value"]) is type(value)
    got = client.get(url(alice, created["id"]), headers=tenant.headers).get_json()
    assert got["value"] == value and type(got["value"]) is type(value)
    listed = client.get(url(alice), headers=tenant.headers).get_json()["items"]
    assert [item["value"] for item in listed] == [value]


@pytest.mark.parametrize("value", JSON_VALUES, ids=lambda v: json.dumps(v)[:30])
def test_put_replaces_the_value_with_any_json(client, tenant, alice, value):
    prop = create(client, tenant.headers, alice, "p", "before")
    put = client.put(url(alice, prop["id"]), json={"value": value}, headers=tenant.headers)
    assert put.status_code == 200 and put.get_json()["value"] == value
    got = client.get(url(alice, prop["id"]), headers=tenant.headers).get_json()
    assert got["value"] == value and type(got["value"]) is type(value)


def test_put_may_rename(client, tenant, alice):
    prop = create(client, tenant.headers, alice, "old", 1)
    body = {"name": "new", "value": 2}
    put = client.put(url(alice, prop["id"]), json=body, headers=tenant.headers)
    assert put.status_code == 200
    assert (put.get_json()["name"], put.get_json()["value"]) == ("new", 2)
    names = [i["name"] for i in client.get(url(alice), headers=tenant.headers).get_json()["items"]]
    assert names == ["new"]


def test_a_value_of_16_kib_is_accepted_and_one_byte_more_is_413(app, client, tenant, alice):
    exactly = "x" * (MAX_BYTES - 2)  # the quotes make 16384 bytes of compact JSON
    assert len(json.dumps(exactly, separators=(",", ":"))) == MAX_BYTES
    prop = create(client, tenant.headers, alice, "big", exactly)
    assert prop["value"] == exactly
    before = property_rows(app, tenant.id)

    over = {"name": "bigger", "value": "x" * (MAX_BYTES - 1)}
    body = assert_error(
        client.post(url(alice), json=over, headers=tenant.headers), 413, "property_too_large"
    )
    assert "16384" in body["message"] or "16 KiB" in body["message"], body
    put = client.put(url(alice, prop["id"]), json={"value": over["value"]}, headers=tenant.headers)
    assert_error(put, 413, "property_too_large")
    assert property_rows(app, tenant.id) == before


def test_a_structured_value_over_16_kib_is_413(app, client, tenant, alice):
    # Spaced-out JSON on the wire does not count: compact JSON of 17 KiB is too big.
    value = {"items": [{"k": "v" * 100} for _ in range(160)]}
    assert len(json.dumps(value, separators=(",", ":"))) > MAX_BYTES
    raw = json.dumps({"name": "doc", "value": value}, indent=4)
    headers = {**tenant.headers, "Content-Type": "application/json"}
    assert_error(client.post(url(alice), data=raw, headers=headers), 413, "property_too_large")
    assert property_rows(app, tenant.id) == []
    small = {"items": [{"k": "v" * 100} for _ in range(140)]}
    spaced = json.dumps({"name": "doc", "value": small}, indent=8)
    assert len(spaced) > MAX_BYTES
    assert client.post(url(alice), data=spaced, headers=headers).status_code == 201


# --- names ---------------------------------------------------------------------------------


def test_duplicate_names_are_409_per_user(app, client, tenant, alice, bob):
    first = create(client, tenant.headers, alice, "lang", "en")
    taken = create(client, tenant.headers, alice, "taken", 1)
    before = property_rows(app, tenant.id)
    body = {"name": "lang", "value": "fr"}
    assert_error(client.post(url(alice), json=body, headers=tenant.headers), 409, "property_exists")
    rename = {"name": "lang", "value": 2}
    assert_error(
        client.put(url(alice, taken["id"]), json=rename, headers=tenant.headers),
        409,
        "property_exists",
    )
    assert property_rows(app, tenant.id) == before
    assert client.get(url(alice, first["id"]), headers=tenant.headers).get_json() == first

    bobs = create(client, tenant.headers, bob, "lang", "de")
    assert bobs["id"] != first["id"] and bobs["value"] == "de"


@pytest.mark.parametrize("length", [1, 128])
def test_names_of_1_to_128_chars_are_accepted(client, tenant, alice, length):
    assert create(client, tenant.headers, alice, "n" * length, 1)["name"] == "n" * length


@pytest.mark.parametrize("length", [0, 129])
def test_names_outside_1_to_128_chars_are_400(app, client, tenant, alice, length):
    prop = create(client, tenant.headers, alice, "ok", 1)
    before = property_rows(app, tenant.id)
    body = {"name": "n" * length, "value": 1}
    created = client.post(url(alice), json=body, headers=tenant.headers)
    assert "name" in assert_error(created, 400, "validation_failed")["fields"]
    updated = client.put(url(alice, prop["id"]), json=body, headers=tenant.headers)
    assert "name" in assert_error(updated, 400, "validation_failed")["fields"]
    assert property_rows(app, tenant.id) == before


# --- ETag / If-Match -----------------------------------------------------------------------


def test_etag_and_if_match(app, client, tenant, alice):
    created = client.post(url(alice), json={"name": "k", "value": 1}, headers=tenant.headers)
    prop_id, first = created.get_json()["id"], created.headers["ETag"]
    assert first
    assert client.get(url(alice, prop_id), headers=tenant.headers).headers["ETag"] == first

    ok = client.put(
        url(alice, prop_id), json={"value": 2}, headers={**tenant.headers, "If-Match": first}
    )
    assert ok.status_code == 200 and ok.headers["ETag"] != first
    current = ok.headers["ETag"]
    assert client.get(url(alice, prop_id), headers=tenant.headers).headers["ETag"] == current
    before = property_rows(app, tenant.id)

    stale = client.put(
        url(alice, prop_id),
        json={"name": "renamed", "value": 3},
        headers={**tenant.headers, "If-Match": first},
    )
    assert_error(stale, 412, "etag_mismatch")
    assert property_rows(app, tenant.id) == before
    got = client.get(url(alice, prop_id), headers=tenant.headers)
    assert got.get_json()["value"] == 2 and got.headers["ETag"] == current


# --- keyset lists --------------------------------------------------------------------------


def test_pages_follow_next_cursor_in_creation_order(client, tenant, alice):
    ids = [create(client, tenant.headers, alice, f"p{i}", i)["id"] for i in range(5)]
    seen, cursor, sizes = [], None, []
    for _ in range(5):
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = client.get(url(alice), query_string=query, headers=tenant.headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        sizes.append(len(body["items"]))
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1] and seen == ids and cursor is None


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "many"},
        {"cursor": "garbage!"},
        {"cursor": base64.urlsafe_b64encode(b"[]").decode()},
        {"cursor": base64.urlsafe_b64encode(b'"text"').decode()},
    ],
    ids=lambda q: "-".join(f"{k}={v}" for k, v in q.items()),
)
def test_bad_limit_or_cursor_is_400(client, tenant, alice, query):
    create(client, tenant.headers, alice, "k", 1)
    assert_error(
        client.get(url(alice), query_string=query, headers=tenant.headers),
        400,
        "invalid_cursor" if "cursor" in query else "validation_failed",
    )


# --- deleting the user ---------------------------------------------------------------------


def test_deleting_the_user_deletes_its_properties(app, client, tenant, alice, bob):
    create(client, tenant.headers, alice, "a1", 1)
    create(client, tenant.headers, alice, "a2", [2])
    kept = create(client, tenant.headers, bob, "b1", 3)
    response = client.delete(f"/users/{alice}", headers=tenant.headers)
    assert response.status_code == 204, response.get_data(as_text=True)
    assert [(row[0], row[1]) for row in property_rows(app, tenant.id)] == [(kept["id"], bob)]
    assert_error(client.get(url(alice), headers=tenant.headers), 404, "user_not_found")


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"value": 1},
        {"name": "k"},
        {},
        {"name": 5, "value": 1},
        {"name": None, "value": 1},
        {"name": "k", "value": 1, "extra": True},
        [{"name": "k", "value": 1}],
        "name=k",
    ],
    ids=lambda b: json.dumps(b),
)
def test_bad_create_bodies_are_400(app, client, tenant, alice, body):
    create(client, tenant.headers, alice, "existing", 1)
    before = property_rows(app, tenant.id)
    assert_error(
        client.post(url(alice), json=body, headers=tenant.headers), 400, "validation_failed"
    )
    assert property_rows(app, tenant.id) == before


@pytest.mark.parametrize(
    "body",
    [{}, {"name": "renamed"}, {"value": 1, "unknown": 2}, {"name": "", "value": 1}],
    ids=lambda b: json.dumps(b),
)
def test_bad_update_bodies_are_400(app, client, tenant, alice, body):
    prop = create(client, tenant.headers, alice, "existing", 1)
    before = property_rows(app, tenant.id)
    assert_error(
        client.put(url(alice, prop["id"]), json=body, headers=tenant.headers),
        400,
        "validation_failed",
    )
    assert property_rows(app, tenant.id) == before


@pytest.mark.parametrize(
    "raw",
    ['{"name": "k", "value": }', '{"name": "k", "value": undefined}', "not json", "{'a': 1}"],
)
def test_a_body_that_is_not_json_is_400(app, client, tenant, alice, raw):
    prop = create(client, tenant.headers, alice, "existing", 1)
    before = property_rows(app, tenant.id)
    headers = {**tenant.headers, "Content-Type": "application/json"}
    assert_error(client.post(url(alice), data=raw, headers=headers), 400, "invalid_json")
    assert_error(client.put(url(alice, prop["id"]), data=raw, headers=headers), 400, "invalid_json")
    assert property_rows(app, tenant.id) == before


def test_unknown_ids_are_404(app, client, tenant, alice, bob):
    prop = create(client, tenant.headers, alice, "k", "alice's")
    before = property_rows(app, tenant.id)
    for method, path, body in [
        ("get", url("nobody"), None),
        ("post", url("nobody"), {"name": "k", "value": 1}),
        ("get", url("nobody", prop["id"]), None),
        ("get", url(alice, "no-such-prop"), None),
        ("put", url(alice, "no-such-prop"), {"value": 1}),
        ("delete", url(alice, "no-such-prop"), None),
        ("get", url(bob, prop["id"]), None),
        ("put", url(bob, prop["id"]), {"value": 1}),
        ("delete", url(bob, prop["id"]), None),
    ]:
        response = getattr(client, method)(path, json=body, headers=tenant.headers)
        assert_error(
            response,
            404,
            "user_not_found" if path.endswith("/properties") else "property_not_found",
        )
    assert property_rows(app, tenant.id) == before


def test_another_tenants_user_and_property_are_404(app, client, tenant, other_tenant, alice):
    prop = create(client, tenant.headers, alice, "k", {"tenant": "a"})
    factories.make_user(app, other_tenant.id, user_id="alice")  # same id in the other tenant
    factories.make_user(app, tenant.id, user_id="only-here")
    before = property_rows(app, tenant.id)
    h = other_tenant.headers
    for method, path, body, code in [
        ("get", url("alice", prop["id"]), None, "property_not_found"),
        ("put", url("alice", prop["id"]), {"value": 1}, "property_not_found"),
        ("delete", url("alice", prop["id"]), None, "property_not_found"),
        ("get", url("only-here"), None, "user_not_found"),
        ("post", url("only-here"), {"name": "k", "value": 1}, "user_not_found"),
    ]:
        assert_error(getattr(client, method)(path, json=body, headers=h), 404, code)
    assert client.get(url("alice"), headers=h).get_json()["items"] == []
    assert property_rows(app, tenant.id) == before
    assert property_rows(app, other_tenant.id) == []
