"""The user surface (the MagicRunez user API): `/user/{id}`, `/user/{id}/profile`,
`/user/profile`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.core.errors import Conflict, Invalid
from tests import factories
from tests.factories import assert_error

BASE_KEYS = {
    "id",
    "tenant_id",
    "username",
    "email",
    "email_verified",
    "display_name",
    "first_name",
    "last_name",
    "photo_url",
    "blocked",
    "created_at",
    "updated_at",
}
PROFILE_KEYS = BASE_KEYS | {
    "phone_number",
    "permissions_group",
    "custom_scopes",
    "permissions",
    "settings",
    "user_metadata",
    "app_metadata",
    "require_twofactor_auth",
    "identities",
    "last_activity_at",
    "last_login_at",
    "logins_count",
}
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def parse_iso(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def make_ada(app, tenant, **extra) -> str:
    fields = {
        "user_id": "ada",
        "username": "Ada",
        "email": "ada@example.com",
        "email_verified": True,
        "display_name": "Ada Lovelace",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "photo_url": "https://img.example.com/ada.png",
        **extra,
    }
    return factories.make_user(app, tenant.id, **fields)


def test_get_user_returns_exactly_the_base_fields(app, client, tenant):
    before = datetime.now(UTC)
    make_ada(app, tenant)
    response = client.get("/user/ada", headers=tenant.headers)
    assert response.status_code == 200
    user = response.get_json()
    assert set(user) == BASE_KEYS
    assert user["id"] == "ada"
    assert user["tenant_id"] == tenant.id
    assert user["username"] == "Ada"
    assert user["email"] == "ada@example.com"
    assert user["email_verified"] is True
    assert user["display_name"] == "Ada Lovelace"
    assert (user["first_name"], user["last_name"]) == ("Ada", "Lovelace")
    assert user["photo_url"] == "https://img.example.com/ada.png"
    assert user["blocked"] is False
    for key in ("created_at", "updated_at"):
        assert ISO_MS_Z.match(user[key]), user[key]
        stamp = parse_iso(user[key])
        assert before - timedelta(seconds=5) <= stamp <= datetime.now(UTC) + timedelta(seconds=5)


def test_get_user_with_trailing_slash(app, client, tenant):
    make_ada(app, tenant)
    response = client.get("/user/ada/", headers=tenant.headers)
    assert response.status_code == 200
    assert response.get_json()["id"] == "ada"


def test_get_user_with_minimal_fields_has_nulls(app, client, tenant):
    factories.make_user(app, tenant.id, user_id="bare")
    user = client.get("/user/bare", headers=tenant.headers).get_json()
    assert set(user) == BASE_KEYS
    assert user["username"] is None and user["email"] is None
    assert user["email_verified"] is False


def test_profile_returns_base_plus_profile_fields(app, client, tenant):
    make_ada(
        app,
        tenant,
        password="correct horse battery",
        phone_number="+15550100",
        permissions_group="admin",
        custom_scopes=["read:reports"],
        settings=[{"key": "theme", "value": "dark"}],
        user_metadata={"plan": "pro"},
        app_metadata={"roles": ["editor"]},
        require_twofactor_auth=True,
    )
    response = client.get("/user/ada/profile", headers=tenant.headers)
    assert response.status_code == 200
    profile = response.get_json()
    assert set(profile) == PROFILE_KEYS
    assert profile["id"] == "ada" and profile["tenant_id"] == tenant.id
    assert profile["phone_number"] == "+15550100"
    assert profile["permissions_group"] == "admin"
    assert profile["custom_scopes"] == ["read:reports"]
    assert profile["permissions"] == []
    assert profile["settings"] == [{"key": "theme", "value": "dark"}]
    assert profile["user_metadata"] == {"plan": "pro"}
    assert profile["app_metadata"] == {"roles": ["editor"]}
    assert profile["require_twofactor_auth"] is True
    assert profile["last_activity_at"] is None
    assert profile["last_login_at"] is None
    assert profile["logins_count"] == 0
    assert ISO_MS_Z.match(profile["created_at"]) and ISO_MS_Z.match(profile["updated_at"])
    primary = profile["identities"][0]
    assert primary["provider"] == "gatehouse"
    assert primary["user_id"] == "ada"
    assert primary["connection"] == "Username-Password-Authentication"
    assert len(profile["identities"]) == 1
    assert "password" not in profile and "password_hash" not in profile


def test_profile_of_user_without_password(app, client, tenant):
    factories.make_user(app, tenant.id, user_id="nopass")
    profile = client.get("/user/nopass/profile", headers=tenant.headers).get_json()
    assert set(profile) == PROFILE_KEYS
    primary = profile["identities"][0]
    assert (primary["provider"], primary["user_id"]) == ("gatehouse", "nopass")
    assert primary["connection"] != "Username-Password-Authentication"
    assert profile["custom_scopes"] == [] and profile["settings"] == []
    assert profile["user_metadata"] == {} and profile["app_metadata"] == {}


def test_profile_base_part_matches_get_user(app, client, tenant):
    make_ada(app, tenant)
    base = client.get("/user/ada", headers=tenant.headers).get_json()
    profile = client.get("/user/ada/profile", headers=tenant.headers).get_json()
    assert {key: profile[key] for key in BASE_KEYS} == base


@pytest.mark.parametrize("path", ["/user/ghost", "/user/ghost/profile", "/user/ghost/profile/"])
def test_unknown_user_is_404(app, client, tenant, path):
    make_ada(app, tenant)
    assert_error(client.get(path, headers=tenant.headers), 404, "user_not_found")
    assert client.get("/user/ada", headers=tenant.headers).status_code == 200


@pytest.mark.parametrize("path", ["/user/profile", "/user/profile/"])
def test_own_profile_with_an_api_key_is_403(app, client, tenant, path):
    factories.make_user(app, tenant.id, user_id="profile")  # a user literally named so
    assert_error(client.get(path, headers=tenant.headers), 403, "user_token_required")


def test_no_credential_is_401(app, client, tenant):
    make_ada(app, tenant)
    response = client.get("/user/ada", headers={"X-Tenant-ID": tenant.id})
    assert_error(response, 401, "missing_credentials")
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_key_without_read_users_is_403(app, client, tenant):
    make_ada(app, tenant)
    key = factories.make_key(app, tenant.id, ["create:users"])
    headers = {"X-APIKEY": key, "X-Tenant-ID": tenant.id}
    assert_error(client.get("/user/ada", headers=headers), 403, "insufficient_scope")
    assert_error(client.get("/user/ada/profile", headers=headers), 403, "insufficient_scope")


@pytest.mark.parametrize("username", ["me", "current", "profile", "ME", "Profile"])
def test_reserved_usernames_are_rejected(app, client, tenant, username):
    with pytest.raises(Invalid) as caught:
        factories.make_user(app, tenant.id, user_id="reserved", username=username)
    assert caught.value.status == 400
    assert_error(client.get("/user/reserved", headers=tenant.headers), 404, "user_not_found")


def test_reserved_word_inside_a_username_is_fine(app, client, tenant):
    factories.make_user(app, tenant.id, user_id="u", username="mel")
    assert client.get("/user/u", headers=tenant.headers).get_json()["username"] == "mel"


@pytest.mark.parametrize("second", ["alice", "ALICE", "Alice"])
def test_duplicate_username_is_a_conflict_case_insensitively(app, client, tenant, second):
    factories.make_user(app, tenant.id, user_id="first", username="Alice")
    with pytest.raises(Conflict) as caught:
        factories.make_user(app, tenant.id, user_id="second", username=second)
    assert caught.value.status == 409
    assert_error(client.get("/user/second", headers=tenant.headers), 404, "user_not_found")
    assert client.get("/user/first", headers=tenant.headers).get_json()["username"] == "Alice"


def test_same_username_in_two_tenants_is_fine(app, client, tenant, other_tenant):
    factories.make_user(app, tenant.id, user_id="a1", username="alice")
    factories.make_user(app, other_tenant.id, user_id="a2", username="alice")
    assert client.get("/user/a1", headers=tenant.headers).get_json()["username"] == "alice"
    assert client.get("/user/a2", headers=other_tenant.headers).get_json()["username"] == "alice"


def test_singular_user_resources_carry_an_etag_that_changes_with_the_row(
    app, client, tenant
) -> None:
    factories.make_user(app, tenant.id, user_id="tagged", email="tagged@example.com")
    first = client.get("/user/tagged", headers=tenant.headers)
    profile = client.get("/user/tagged/profile", headers=tenant.headers)
    assert first.headers["ETag"].startswith('"') and len(first.headers["ETag"]) == 66
    assert profile.headers["ETag"] == first.headers["ETag"]
    patched = client.patch("/users/tagged", json={"emailVerified": True}, headers=tenant.headers)
    assert patched.status_code == 200
    assert (
        client.get("/user/tagged", headers=tenant.headers).headers["ETag"] != first.headers["ETag"]
    )
