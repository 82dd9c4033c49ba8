"""The management surface (the Auth0 Management API v2) driven by the official Auth0 SDK,
unchanged, over real HTTP: users with an API key (with and without the tenant header) and
with a user's own access token, Auth0's list pages, `q`, sorting and field selection, and
its errors."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from auth0.management.core.api_error import ApiError

from tests import factories
from tests.factories import PASSWORD, auth0_client, sign_in

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def base_url(app) -> Iterator[str]:
    with factories.serve(app) as url:
        yield url


def api_error(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    return caught.value


def assert_auth0_error(error: ApiError, status: int, code: str) -> dict:
    assert error.status_code == status, error.body
    body = error.body
    assert set(body) == {"statusCode", "error", "message", "errorCode"}, body
    assert body["statusCode"] == status and body["errorCode"] == code, body
    assert isinstance(body["error"], str) and body["message"], body
    return body


def test_sdk_manages_users_with_an_api_key(base_url, tenant):
    for client in (
        auth0_client(base_url, tenant.key, tenant.id),
        auth0_client(base_url, tenant.key),
    ):
        created = client.users.create(
            connection="Username-Password-Authentication",
            user_id="ada",
            email="Ada@Example.com",
            username="ada",
            password=PASSWORD,
            given_name="Ada",
            family_name="Lovelace",
            name="Ada Lovelace",
            nickname="ada",
            picture="https://example.com/ada.png",
            user_metadata={"theme": "dark", "langs": ["en"]},
            app_metadata={"plan": "pro"},
            email_verified=True,
        )
        assert created.user_id == "ada" and created.email == "Ada@Example.com"
        assert created.name == "Ada Lovelace" and created.given_name == "Ada"
        assert created.user_metadata == {"theme": "dark", "langs": ["en"]}
        assert created.blocked is False and created.logins_count == 0
        assert created.identities[0].provider == "gatehouse"
        assert created.identities[0].user_id == "ada"
        assert created.identities[0].connection == "Username-Password-Authentication"

        read = client.users.get("ada")
        assert read.app_metadata == {"plan": "pro"} and read.picture.endswith("ada.png")
        assert read.created_at is not None and read.last_login is None

        updated = client.users.update(
            "ada", user_metadata={"theme": None, "tz": "UTC"}, family_name="Byron", blocked=False
        )
        assert updated.user_metadata == {"langs": ["en"], "tz": "UTC"}
        assert updated.family_name == "Byron" and updated.given_name == "Ada"

        assert [u.user_id for u in client.users.list_users_by_email(email="ada@example.com")] == [
            "ada"
        ]
        client.users.delete("ada")
        assert_auth0_error(api_error(client.users.get, "ada"), 404, "inexistent_user")


def test_answers_carry_auth0_dates_and_counts_of_the_signin(app, client, base_url, tenant):
    factories.make_user(app, tenant.id, user_id="u1", username="grace", password=PASSWORD)
    sign_in(client, tenant.id, "grace", PASSWORD)
    raw = client.get("/api/v2/users/u1", headers={"Authorization": f"Bearer {tenant.key}"})
    body = raw.get_json()
    assert ISO_MS.match(body["created_at"]) and ISO_MS.match(body["updated_at"])
    assert ISO_MS.match(body["last_login"]) and body["logins_count"] == 1
    assert auth0_client(base_url, tenant.key).users.get("u1").logins_count == 1


def test_list_pages_totals_and_the_sdk_pager(app, base_url, tenant, other_tenant):
    for n in range(7):
        factories.make_user(app, tenant.id, user_id=f"user-{n}", email=f"u{n}@example.com")
    factories.make_user(app, other_tenant.id, user_id="elsewhere", email="u0@example.com")
    client = auth0_client(base_url, tenant.key)

    pager = client.users.list(per_page=3, include_totals=True, sort="user_id:1")
    assert [u.user_id for u in pager] == [f"user-{n}" for n in range(7)]
    first = client.users.list(per_page=3, page=0, include_totals=True, sort="user_id:-1")
    assert first.response.total == 7 and first.response.start == 0 and first.response.limit == 3
    assert first.response.length == 3
    assert [u.user_id for u in first.items] == ["user-6", "user-5", "user-4"]
    past = client.users.list(per_page=3, page=5, include_totals=True)
    assert past.items == [] and past.response.total == 7

    raw = factories_get(app, tenant, "/api/v2/users?per_page=2&page=1&sort=user_id:1")
    assert [u["user_id"] for u in raw] == ["user-2", "user-3"]  # a bare array without totals
    assert factories_get(app, tenant, "/api/v2/users?page=9") == []


def factories_get(app, tenant, path: str):
    response = app.test_client().get(path, headers={"Authorization": f"Bearer {tenant.key}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_q_subset_sort_and_fields(app, base_url, tenant):
    factories.make_user(app, tenant.id, user_id="a1", email="ann@example.com", username="ann")
    factories.make_user(
        app, tenant.id, user_id="b2", email="bob@example.org", display_name="Bob Stone"
    )
    factories.make_user(app, tenant.id, user_id="c3", email="carl@example.com", username="carl")
    client = auth0_client(base_url, tenant.key, tenant.id)

    def ids(q: str, **kw) -> list[str]:
        return [u.user_id for u in client.users.list(q=q, include_totals=True, **kw).items]

    assert ids('email:"ANN@example.com"') == ["a1"]
    assert ids("email:bob@example.org") == ["b2"]
    assert ids('name:"bob stone"') == ["b2"]
    assert ids("username:carl") == ["c3"]
    assert ids("user_id:b2") == ["b2"]
    assert ids("carl") == ["c3"]  # a bare term matches any field
    assert ids("username:ca*") == ["c3"]
    assert ids("username:ann AND email:ann@example.com") == ["a1"]
    assert ids("username:ann email:bob@example.org") == []
    assert ids("", sort="email:-1") == ["c3", "b2", "a1"]
    assert ids("example.com") == []  # terms match whole values (or a prefix with *)

    picked = client.users.list(q="user_id:a1", fields="user_id,email", include_fields=True)
    assert picked.items[0].model_dump(exclude_none=True) == {
        "user_id": "a1",
        "email": "ann@example.com",
    }
    dropped = client.users.get("a1", fields="identities,user_metadata", include_fields=False)
    assert dropped.identities is None and dropped.user_metadata is None
    assert dropped.email == "ann@example.com"

    for bad, field in (
        ("name:(a OR b)", "q"),
        ("email:a OR email:b", "q"),
        ("password:x", "q"),
        ("user_id:a*b", "q"),
        ("email:*", "q"),
    ):
        body = assert_auth0_error(api_error(client.users.list, q=bad), 400, "invalid_query_string")
        assert f"'{field}'" in body["message"]
    body = assert_auth0_error(
        api_error(client.users.list, sort="password:1"), 400, "invalid_query_string"
    )
    assert "'sort'" in body["message"]
    body = assert_auth0_error(
        api_error(client.users.list, per_page=101), 400, "invalid_query_string"
    )
    assert "'per_page'" in body["message"]


def test_bad_bodies_duplicates_and_reserved_names(app, base_url, tenant):
    client = auth0_client(base_url, tenant.key)
    factories.make_user(app, tenant.id, user_id="taken", username="taken")
    conn = "Username-Password-Authentication"
    body = assert_auth0_error(
        api_error(client.users.create, connection=conn, email="not-an-address"), 400, "invalid_body"
    )
    assert "'email'" in body["message"]
    body = assert_auth0_error(
        api_error(client.users.create, connection=conn, username="me"), 400, "invalid_body"
    )
    assert "'username'" in body["message"]
    assert_auth0_error(
        api_error(client.users.create, connection=conn, user_id="taken"), 409, "auth0_idp_error"
    )
    assert_auth0_error(
        api_error(client.users.create, connection=conn, username="TAKEN"), 409, "auth0_idp_error"
    )
    body = assert_auth0_error(
        api_error(client.users.create, connection=conn, password="short"), 400, "invalid_body"
    )
    assert "'password'" in body["message"]
    raw = app.test_client().post(
        "/api/v2/users",
        json={"connection": conn, "nickname": 5, "colour": "red"},
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    error = raw.get_json()
    assert raw.status_code == 400 and error["errorCode"] == "invalid_body"
    assert "'nickname'" in error["message"] and "'colour'" in error["message"]
    assert factories.count_users(app, tenant.id) == 1


def test_metadata_merge_edge_cases(app, base_url, tenant):
    factories.make_user(
        app,
        tenant.id,
        user_id="m",
        user_metadata={"a": 1, "nested": {"x": 1, "y": 2}},
        app_metadata={"roles": ["admin"]},
    )
    client = auth0_client(base_url, tenant.key)
    # One level deep: a nested object is replaced whole, not merged.
    user = client.users.update("m", user_metadata={"nested": {"z": 3}})
    assert user.user_metadata == {"a": 1, "nested": {"z": 3}}
    # null removes a key; a missing key is no error; other metadata is untouched.
    user = client.users.update("m", user_metadata={"a": None, "missing": None, "b": False})
    assert user.user_metadata == {"nested": {"z": 3}, "b": False}
    assert user.app_metadata == {"roles": ["admin"]}
    # An empty object changes nothing; null clears it all.
    assert client.users.update("m", user_metadata={}).user_metadata == {
        "nested": {"z": 3},
        "b": False,
    }
    assert client.users.update("m", app_metadata=None).app_metadata == {}
    # Root fields are replaced, and null unsets them.
    user = client.users.update("m", name="Em", nickname="em")
    assert (user.name, user.nickname) == ("Em", "em")
    assert client.users.update("m", name=None).name is None
    # A new email is unverified unless said otherwise.
    client.users.update("m", email_verified=True)
    assert client.users.update("m", email="new@example.com").email_verified is False
    big = {"blob": "x" * 17000}
    body = assert_auth0_error(
        api_error(client.users.update, "m", user_metadata=big), 400, "invalid_body"
    )
    assert "'user_metadata'" in body["message"]
    assert_auth0_error(api_error(client.users.update, "m"), 400, "invalid_body")


def test_patch_password_and_username(app, client, base_url, tenant):
    factories.make_user(app, tenant.id, user_id="p", username="pat", password=PASSWORD)
    session = sign_in(client, tenant.id, "pat", PASSWORD)
    sdk = auth0_client(base_url, tenant.key)
    sdk.users.update("p", password="a much newer password", username="patricia")
    assert factories.password_matches(app, tenant.id, "p", "a much newer password")
    stale = client.get("/api/v2/users/p", headers=factories.bearer(session["access_token"]))
    assert stale.status_code == 401 and stale.get_json()["errorCode"] == "invalid_token"
    assert sign_in(client, tenant.id, "patricia", "a much newer password")["access_token"]


def test_user_token_reads_itself_and_changes_only_its_user_metadata(app, client, base_url, tenant):
    factories.make_user(app, tenant.id, user_id="me1", username="meg", password=PASSWORD)
    factories.make_user(app, tenant.id, user_id="other", username="otto")
    token = sign_in(client, tenant.id, "meg", PASSWORD)["access_token"]
    for sdk in (auth0_client(base_url, token), auth0_client(base_url, token, tenant.id)):
        me = sdk.users.get("me1")
        assert me.username == "meg" and me.logins_count == 1
        updated = sdk.users.update("me1", user_metadata={"colour": "green"})
        assert updated.user_metadata == {"colour": "green"}
        assert sdk.users.enrollments.get("me1") == []

        forbidden = [
            (sdk.users.get, ("other",), {}),
            (sdk.users.update, ("other",), {"user_metadata": {"x": 1}}),
            (sdk.users.update, ("me1",), {"app_metadata": {"plan": "free"}}),
            (sdk.users.update, ("me1",), {"blocked": False}),
            (sdk.users.update, ("me1",), {"name": "Meg"}),
            (sdk.users.list, (), {}),
            (sdk.users.list_users_by_email, (), {"email": "x@example.com"}),
            (sdk.users.create, (), {"connection": "c", "email": "n@example.com"}),
            (sdk.users.delete, ("me1",), {}),
            (sdk.users.enrollments.get, ("other",), {}),
            (sdk.users.multifactor.delete_provider, ("other", "google-authenticator"), {}),
            (sdk.users.identities.link, ("me1",), {"provider": "gatehouse", "user_id": "other"}),
            (sdk.users.identities.delete, ("other", "gatehouse", "x"), {}),
        ]
        for call, args, kwargs in forbidden:
            assert_auth0_error(api_error(call, *args, **kwargs), 403, "insufficient_scope")
    assert factories.count_users(app, tenant.id) == 2


def test_errors_in_auth0_shape_for_every_status(app, client, tenant):
    key = {"Authorization": f"Bearer {tenant.key}"}
    cases = [
        (client.get("/api/v2/nowhere", headers=key), 404, "not_found"),
        (client.put("/api/v2/users", headers=key), 405, "method_not_allowed"),
        (client.get("/api/v2/users"), 401, "missing_credentials"),
        (client.get("/api/v2/users", headers={"Authorization": "Bearer nope"}), 401, None),
        (client.post("/api/v2/users", data="x=1", headers=key), 415, None),
        (
            client.post(
                "/api/v2/users", data="{" * 10, headers=key, content_type="application/json"
            ),
            400,
            "invalid_body",
        ),
        (
            client.post(
                "/api/v2/users",
                data=b"x" * (1024 * 1024 + 1),
                headers=key,
                content_type="application/json",
            ),
            413,
            None,
        ),
        (client.get("/api/v2/users/ghost", headers=key), 404, "inexistent_user"),
        (client.get("/api/v2/users", headers={**key, "X-Tenant-ID": "other"}), 403, None),
    ]
    for response, status, code in cases:
        body = response.get_json()
        assert response.status_code == status, (status, body)
        assert set(body) == {"statusCode", "error", "message", "errorCode"}, body
        assert body["statusCode"] == status
        if code:
            assert body["errorCode"] == code, body
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_rate_limit_answer_in_auth0_shape(app):
    from app.api import management
    from app.core.errors import RateLimited

    with app.test_request_context("/api/v2/users"):
        body = management.render_error(RateLimited(), "rid")
    assert body == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": "Too many requests",
        "errorCode": "too_many_requests",
    }


def test_user_created_with_a_username_resets_its_password_by_username(
    app, client, base_url, postmark, celery_worker
):
    tenant = factories.make_tenant(
        app,
        "mailco",
        email_from="noreply@example.com",
        postmark_server_token="pm-token",
        password_reset_hosts=["app.example.com"],
    )
    sdk = auth0_client(base_url, tenant.key)
    sdk.users.create(connection="db", username="zoe", email="zoe@example.com")
    asked = client.post(
        "/auth/password-reset",
        json={"username": "zoe", "host": "app.example.com"},
        headers={"X-Tenant-ID": tenant.id},
    )
    assert asked.status_code == 200 and asked.get_json() == {"msg": "ok"}
    [mail] = factories.wait_until(lambda: postmark.mails())
    assert mail.body["To"] == "zoe@example.com"
