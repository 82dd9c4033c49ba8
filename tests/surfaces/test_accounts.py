"""The accounts surface (the M2 Accounts API): `/auth/user`, `/users/{userId}`, auth and error
edges."""

from __future__ import annotations

import json
import re

import pytest

from tests import factories
from tests.factories import assert_error

ACCOUNT_KEYS = {
    "uid",
    "email",
    "emailVerified",
    "displayName",
    "photoURL",
    "phoneNumber",
    "disabled",
    "metadata",
    "customClaims",
    "tokensValidAfterTime",
}
UID_RE = re.compile(r"^[A-Za-z0-9._@|:-]{1,128}$")


def create(client, tenant, **body):
    return client.post("/auth/user", json=body, headers=tenant.m2_headers)


def get_account(client, tenant, uid):
    return client.get(f"/users/{uid}", headers=tenant.m2_headers)


# --- POST /auth/user ----------------------------------------------------------------------


def test_create_with_every_field(app, client, tenant):
    body = {
        "uid": "user-1",
        "displayName": "Ada Lovelace",
        "email": "ada@example.com",
        "emailVerified": True,
        "photoURL": "https://img.example.com/ada.png",
        "password": "correct horse battery",
    }
    response = create(client, tenant, **body)
    assert response.status_code == 200, response.get_json()
    account = response.get_json()
    assert set(account) == ACCOUNT_KEYS
    assert set(account["metadata"]) == {"creationTime", "lastSignInTime"}
    assert account["uid"] == "user-1"
    assert account["email"] == "ada@example.com"
    assert account["emailVerified"] is True
    assert account["displayName"] == "Ada Lovelace"
    assert account["photoURL"] == "https://img.example.com/ada.png"
    assert account["phoneNumber"] is None
    assert account["disabled"] is False
    assert isinstance(account["metadata"]["creationTime"], str)
    assert account["metadata"]["lastSignInTime"] is None
    assert account["customClaims"] == {}
    assert "password" not in json.dumps(account)

    stored = get_account(client, tenant, "user-1")
    assert stored.status_code == 200
    assert stored.get_json() == account
    assert factories.password_matches(app, tenant.id, "user-1", "correct horse battery")
    assert not factories.password_matches(app, tenant.id, "user-1", "wrong password")


def test_create_generates_uid_when_absent(client, tenant):
    response = create(client, tenant, email="gen@example.com")
    assert response.status_code == 200
    uid = response.get_json()["uid"]
    assert UID_RE.match(uid)
    assert get_account(client, tenant, uid).get_json()["email"] == "gen@example.com"


def test_create_without_body_creates_user_with_generated_id(app, client, tenant):
    response = client.post("/auth/user", headers=tenant.m2_headers)
    assert response.status_code == 200, response.get_json()
    account = response.get_json()
    assert set(account) == ACCOUNT_KEYS
    assert UID_RE.match(account["uid"])
    assert account["email"] is None
    assert get_account(client, tenant, account["uid"]).status_code == 200
    assert factories.count_users(app, tenant.id) == 1


def test_create_duplicate_uid_is_409(client, tenant):
    assert create(client, tenant, uid="dup", email="first@example.com").status_code == 200
    assert_error(create(client, tenant, uid="dup", email="second@example.com"), 409, "user_exists")
    assert get_account(client, tenant, "dup").get_json()["email"] == "first@example.com"


@pytest.mark.parametrize("uid", ["bad uid", "a/b", "ü-umlaut", "a" * 129, "", "semi;colon"])
def test_create_rejects_bad_uid(app, client, tenant, uid):
    body = assert_error(create(client, tenant, uid=uid), 400, "validation_failed")
    assert "uid" in body.get("fields", {})
    assert factories.count_users(app, tenant.id) == 0


REJECTED_BODIES = {
    "invalid email": ({"uid": "rej", "email": "not-an-email"}, "invalid_email"),
    "email without domain": ({"uid": "rej", "email": "ada@"}, "invalid_email"),
    "unknown field": ({"uid": "rej", "nickname": "ada"}, "validation_failed"),
    "uid not a string": ({"uid": 123}, "validation_failed"),
    "displayName not a string": ({"uid": "rej", "displayName": 42}, "validation_failed"),
    "emailVerified not a boolean": ({"uid": "rej", "emailVerified": "maybe"}, "validation_failed"),
    "emailVerified as a string": ({"uid": "rej", "emailVerified": "yes"}, "validation_failed"),
    "password not a string": ({"uid": "rej", "password": 12345678}, "validation_failed"),
    "photoURL not a URL": ({"uid": "rej", "photoURL": "not a url"}, "validation_failed"),
    "body is a list": (["rej"], "validation_failed"),
    "short password": ({"uid": "rej", "password": "short"}, "password_too_short"),
}


@pytest.mark.parametrize(("body", "code"), REJECTED_BODIES.values(), ids=REJECTED_BODIES.keys())
def test_create_rejects_bad_input_with_400(app, client, tenant, body, code):
    response = client.post("/auth/user", json=body, headers=tenant.m2_headers)
    assert_error(response, 400, code)
    assert get_account(client, tenant, "rej").status_code == 404
    assert factories.count_users(app, tenant.id) == 0


def test_create_names_the_failing_field(client, tenant):
    body = assert_error(create(client, tenant, uid="rej", nickname="ada"), 400, "validation_failed")
    assert "nickname" in body["fields"]


def test_create_malformed_json_is_400(app, client, tenant):
    response = client.post(
        "/auth/user",
        data='{"uid": "rej", ',
        content_type="application/json",
        headers=tenant.m2_headers,
    )
    assert_error(response, 400, "invalid_json")
    assert factories.count_users(app, tenant.id) == 0


def test_create_text_plain_body_is_415(app, client, tenant):
    response = client.post(
        "/auth/user", data="uid=rej", content_type="text/plain", headers=tenant.m2_headers
    )
    assert_error(response, 415, "unsupported_media_type")
    assert factories.count_users(app, tenant.id) == 0


def test_create_body_over_one_mib_is_413(app, client, tenant):
    big = {"uid": "rej", "displayName": "x" * (1024 * 1024 + 16)}
    assert_error(create(client, tenant, **big), 413, "payload_too_large")
    assert factories.count_users(app, tenant.id) == 0


def test_password_minimum_is_the_tenants_setting(app, client):
    strict = factories.make_tenant(app, "strict", password_min_length=12)
    assert_error(
        create(client, strict, uid="short", password="elevenchars"), 400, "password_too_short"
    )
    assert get_account(client, strict, "short").status_code == 404
    assert create(client, strict, uid="long", password="twelve chars").status_code == 200
    assert factories.password_matches(app, strict.id, "long", "twelve chars")


# --- GET /auth/user -----------------------------------------------------------------------


def test_lookup_by_user_id(client, tenant):
    create(client, tenant, uid="look-1", email="look@example.com")
    response = client.get("/auth/user?userId=look-1", headers=tenant.m2_headers)
    assert response.status_code == 200
    accounts = response.get_json()
    assert [a["uid"] for a in accounts] == ["look-1"]
    assert set(accounts[0]) == ACCOUNT_KEYS
    assert accounts[0]["email"] == "look@example.com"


def test_lookup_by_email_returns_every_user_sharing_it(client, tenant):
    for uid in ("share-a", "share-b", "share-c"):
        create(client, tenant, uid=uid, email="shared@example.com")
    create(client, tenant, uid="loner", email="loner@example.com")
    response = client.get("/auth/user?email=shared@example.com", headers=tenant.m2_headers)
    assert response.status_code == 200
    assert sorted(a["uid"] for a in response.get_json()) == ["share-a", "share-b", "share-c"]


@pytest.mark.parametrize("query", ["userId=nobody", "email=nobody@example.com"])
def test_lookup_without_match_is_an_empty_array(client, tenant, query):
    create(client, tenant, uid="someone", email="someone@example.com")
    response = client.get(f"/auth/user?{query}", headers=tenant.m2_headers)
    assert response.status_code == 200
    assert response.get_json() == []


def test_lookup_without_user_id_or_email_is_400(client, tenant):
    assert_error(client.get("/auth/user", headers=tenant.m2_headers), 400, "validation_failed")


# --- /users/{userId} ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/users/u1", "/users/u1/"])
def test_get_account_with_and_without_trailing_slash(client, tenant, path):
    create(client, tenant, uid="u1", email="u1@example.com")
    response = client.get(path, headers=tenant.m2_headers)
    assert response.status_code == 200
    assert response.get_json()["uid"] == "u1"
    assert set(response.get_json()) == ACCOUNT_KEYS


def test_post_with_trailing_slash_creates_without_redirect(client, tenant):
    response = client.post("/auth/user/", json={"uid": "slash"}, headers=tenant.m2_headers)
    assert response.status_code == 200
    assert get_account(client, tenant, "slash").status_code == 200


def test_get_unknown_account_is_404(client, tenant):
    assert_error(get_account(client, tenant, "ghost"), 404, "user_not_found")


def test_patch_email_resets_verified(client, tenant):
    create(client, tenant, uid="p1", email="old@example.com", emailVerified=True)
    response = client.patch(
        "/users/p1", json={"email": "new@example.com"}, headers=tenant.m2_headers
    )
    assert response.status_code == 200
    assert response.get_json()["email"] == "new@example.com"
    assert response.get_json()["emailVerified"] is False
    stored = get_account(client, tenant, "p1").get_json()
    assert (stored["email"], stored["emailVerified"]) == ("new@example.com", False)


def test_patch_sets_email_verified(client, tenant):
    create(client, tenant, uid="p2", email="p2@example.com")
    response = client.patch("/users/p2/", json={"emailVerified": True}, headers=tenant.m2_headers)
    assert response.status_code == 200
    assert response.get_json()["emailVerified"] is True
    assert get_account(client, tenant, "p2").get_json()["emailVerified"] is True


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "validation_failed"),
        ({"email": "not-an-email"}, "invalid_email"),
        ({"nickname": "x"}, "validation_failed"),
    ],
)
def test_patch_rejects_bad_body(client, tenant, body, code):
    before = create(client, tenant, uid="p3", email="p3@example.com").get_json()
    assert_error(client.patch("/users/p3", json=body, headers=tenant.m2_headers), 400, code)
    assert get_account(client, tenant, "p3").get_json() == before


def test_patch_unknown_account_is_404(app, client, tenant):
    response = client.patch("/users/ghost", json={"emailVerified": True}, headers=tenant.m2_headers)
    assert_error(response, 404, "user_not_found")
    assert factories.count_users(app, tenant.id) == 0


def test_delete_account(client, tenant):
    create(client, tenant, uid="d1")
    response = client.delete("/users/d1", headers=tenant.m2_headers)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert_error(get_account(client, tenant, "d1"), 404, "user_not_found")
    assert_error(client.delete("/users/d1", headers=tenant.m2_headers), 404, "user_not_found")


@pytest.mark.parametrize("path", ["/users/current", "/users/current/"])
def test_current_account_with_an_api_key_is_403(client, tenant, path):
    assert_error(client.get(path, headers=tenant.m2_headers), 403, "user_token_required")


# --- credentials --------------------------------------------------------------------------


def test_no_credential_is_401_with_bearer_challenge(app, client, tenant):
    response = client.post("/auth/user", json={"uid": "anon"})
    assert_error(response, 401, "missing_credentials")
    assert "Bearer" in response.headers["WWW-Authenticate"]
    assert get_account(client, tenant, "anon").status_code == 404


@pytest.mark.parametrize(
    "key", ["gh_0123456789abcdef_" + "x" * 43, "not-a-key", "gh_", "gh_only-two"]
)
def test_unknown_or_malformed_key_is_401(client, tenant, key):
    headers = {"x-api-key": key, "x-m2-organization-id": tenant.id}
    response = client.post("/auth/user", json={"uid": "anon"}, headers=headers)
    assert_error(response, 401, "invalid_api_key")
    assert "Bearer" in response.headers["WWW-Authenticate"]
    assert get_account(client, tenant, "anon").status_code == 404


def test_revoked_key_is_401(app, client, tenant, root_headers):
    spare = factories.make_key(app, tenant.id, ["*"])
    response = client.delete(f"/tenants/{tenant.id}/api-keys/{tenant.key_id}", headers=root_headers)
    assert response.status_code == 204
    assert_error(get_account(client, tenant, "anyone"), 401, "invalid_api_key")
    assert_error(create(client, tenant, uid="after-revoke"), 401, "invalid_api_key")
    spare_headers = {"x-api-key": spare, "x-m2-organization-id": tenant.id}
    assert client.get("/users/after-revoke", headers=spare_headers).status_code == 404


def test_tenant_header_naming_another_tenant_is_403(client, tenant, other_tenant):
    headers = {"x-api-key": tenant.key, "x-m2-organization-id": other_tenant.id}
    assert_error(
        client.post("/auth/user", json={"uid": "cross"}, headers=headers), 403, "tenant_mismatch"
    )
    assert get_account(client, tenant, "cross").status_code == 404
    assert get_account(client, other_tenant, "cross").status_code == 404


@pytest.mark.parametrize("use_root", [False, True])
def test_disagreeing_tenant_headers_are_403(client, tenant, other_tenant, root_headers, use_root):
    key = root_headers["X-APIKEY"] if use_root else tenant.key
    headers = {"x-api-key": key, "X-Tenant-ID": tenant.id, "x-m2-organization-id": other_tenant.id}
    assert_error(
        client.post("/auth/user", json={"uid": "cross"}, headers=headers), 403, "tenant_mismatch"
    )
    assert get_account(client, tenant, "cross").status_code == 404
    assert get_account(client, other_tenant, "cross").status_code == 404


def test_narrow_key_may_read_but_not_create(app, client, tenant):
    create(client, tenant, uid="seen", email="seen@example.com")
    narrow = {"x-api-key": factories.make_key(app, tenant.id, ["read:users"])}
    assert client.get("/users/seen", headers=narrow).get_json()["email"] == "seen@example.com"
    assert client.get("/auth/user?userId=seen", headers=narrow).status_code == 200
    assert_error(
        client.post("/auth/user", json={"uid": "nope"}, headers=narrow), 403, "insufficient_scope"
    )
    assert_error(client.delete("/users/seen", headers=narrow), 403, "insufficient_scope")
    assert get_account(client, tenant, "nope").status_code == 404
    assert get_account(client, tenant, "seen").status_code == 200


def test_api_key_as_bearer_works(client, tenant):
    headers = {"Authorization": f"Bearer {tenant.key}", "x-m2-organization-id": tenant.id}
    response = client.post("/auth/user", json={"uid": "bearer"}, headers=headers)
    assert response.status_code == 200
    assert client.get("/users/bearer", headers=headers).get_json()["uid"] == "bearer"
    assert get_account(client, tenant, "bearer").status_code == 200


def test_root_key_acts_on_the_named_tenant(client, tenant, other_tenant, root_headers):
    headers = {**root_headers, "X-Tenant-ID": tenant.id}
    response = client.post("/auth/user", json={"uid": "by-root"}, headers=headers)
    assert response.status_code == 200
    assert client.get("/users/by-root", headers=headers).status_code == 200
    assert get_account(client, tenant, "by-root").status_code == 200
    assert get_account(client, other_tenant, "by-root").status_code == 404


def test_root_key_without_tenant_header_is_400(app, client, tenant, root_headers):
    assert_error(
        client.post("/auth/user", json={"uid": "rootless"}, headers=root_headers),
        400,
        "tenant_required",
    )
    assert_error(client.get("/users/rootless", headers=root_headers), 400, "tenant_required")
    assert factories.count_users(app, tenant.id) == 0


# --- request ids and error shape ----------------------------------------------------------


def test_request_id_is_generated_on_success_and_error(client, tenant):
    ok = create(client, tenant, uid="rid")
    missing = get_account(client, tenant, "ghost")
    assert ok.headers["X-Request-ID"]
    assert missing.headers["X-Request-ID"]
    assert ok.headers["X-Request-ID"] != missing.headers["X-Request-ID"]
    assert missing.get_json()["request_id"] == missing.headers["X-Request-ID"]


def test_valid_incoming_request_id_is_echoed(client, tenant):
    headers = {**tenant.m2_headers, "X-Request-ID": "trace-42.abc:def"}
    ok = client.post("/auth/user", json={"uid": "rid"}, headers=headers)
    assert ok.status_code == 200
    assert ok.headers["X-Request-ID"] == "trace-42.abc:def"
    missing = client.get("/users/ghost", headers=headers)
    assert assert_error(missing, 404, "user_not_found")["request_id"] == "trace-42.abc:def"


def test_invalid_incoming_request_id_is_replaced(client, tenant):
    headers = {**tenant.m2_headers, "X-Request-ID": "not valid <script>"}
    response = client.get("/users/ghost", headers=headers)
    assert_error(response, 404, "user_not_found")
    assert response.headers["X-Request-ID"] != "not valid <script>"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/users/u/unknown-route", 404, "not_found"),
        ("put", "/users/u", 405, "method_not_allowed"),
        ("put", "/auth/user", 405, "method_not_allowed"),
    ],
)
def test_unknown_route_and_wrong_method_are_json(client, tenant, method, path, status, code):
    assert_error(getattr(client, method)(path, headers=tenant.m2_headers), status, code)
