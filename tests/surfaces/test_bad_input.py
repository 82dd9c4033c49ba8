"""Bad input is a 400 (never a 500) in the calling surface's own error shape, and stores
nothing: deep JSON, NaN/Infinity, huge numbers, NUL and lone surrogates in bodies, forms,
paths, query strings and headers, forged paging cursors; and every 405 names `Allow`."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.conftest import ROOT_KEY
from tests.factories import PASSWORD, TenantHandle, assert_surface_error, table_counts

# A 400's code in each surface's dialect, from the default code.
DIALECT = {
    "me": lambda code: "INVALID_BODY",
    "oauth": lambda code: "invalid_request",
    "directory": str.upper,
    "management": lambda code: "invalid_body",  # Auth0's code for a bad body
}

BAD_JSON = {
    "nested 1000 deep": "[" * 1000 + "]" * 1000,
    "nested objects 1000 deep": '{"a":' * 1000 + "1" + "}" * 1000,
    "NaN": '{"name": NaN, "value": NaN}',
    "Infinity": '{"name": Infinity}',
    "-Infinity": '{"name": -Infinity}',
    "a float that overflows": '{"name": 1e999}',
    "5000 digits": '{"name": ' + "9" * 5000 + "}",
}
BAD_TEXT = {
    "NUL in a value": '{"name": "a\\u0000b", "uid": "a\\u0000b", "username": "a\\u0000b"}',
    "NUL in a key": '{"a\\u0000b": 1}',
    "a lone surrogate": '{"name": "\\ud800", "uid": "\\udfff"}',
}


def expected(surface: str, code: str) -> str:
    return DIALECT.get(surface, lambda c: c)(code)


@pytest.fixture()
def user_token(app: Flask, client: FlaskClient, tenant: TenantHandle) -> str:
    factories.make_user(app, tenant.id, user_id="joe", username="joe", password=PASSWORD)
    return factories.sign_in(client, tenant.id, "joe", PASSWORD)["access_token"]


def json_operations(client: FlaskClient) -> list[tuple[str, str, str, list[dict[str, Any]]]]:
    """(method, path with ids filled in, surface, security) of every operation of the
    document that takes a JSON body."""
    spec = client.get("/openapi.json").get_json()
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                filled = re.sub(r"\{[^}]+\}", "nobody", path)
                found.append((method, filled, operation["tags"][0], operation["security"]))
    return found


def credentials(security: list[dict[str, Any]], tenant: TenantHandle, token: str) -> dict:
    schemes = {name for requirement in security for name in requirement}
    if "ApiKey" in schemes:  # the root key reaches tenant and platform operations alike
        return {"X-APIKEY": ROOT_KEY, "X-Tenant-ID": tenant.id}
    if "Bearer" in schemes:
        return {**factories.bearer(token), "X-Tenant-ID": tenant.id}
    return {"X-Tenant-ID": tenant.id}


@pytest.mark.parametrize(
    ("raw", "code"),
    [(raw, "invalid_json") for raw in BAD_JSON.values()]
    + [(raw, "invalid_characters") for raw in BAD_TEXT.values()],
    ids=[*BAD_JSON, *BAD_TEXT],
)
def test_every_json_endpoint_refuses_bad_json_in_its_own_shape(
    app, client, tenant, user_token, raw, code
):
    operations = json_operations(client)
    assert len(operations) >= 20, operations
    before = table_counts(app)
    for method, path, surface, security in operations:
        headers = {**credentials(security, tenant, user_token), "Content-Type": "application/json"}
        response = client.open(path, method=method.upper(), data=raw, headers=headers)
        assert_surface_error(response, 400, surface, expected(surface, code))
    assert table_counts(app) == before


@pytest.mark.parametrize(
    "fields",
    [
        {"grant_type": "password", "username": "a\x00b", "password": PASSWORD},
        {"grant_type": "password", "username": "joe", "password": "pw\x00"},
        {"grant_type": "password", "email": "\x00@example.com", "password": PASSWORD},
        {"grant_type": "refresh_token", "refresh_token": "rt_\x00"},
        {"grant_type": "client_credentials", "client_id": "a\x00", "client_secret": "b\x00"},
        {"grant_type": "password\x00"},
    ],
    ids=["username", "password", "email", "refresh token", "client secret", "grant type"],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_nul_in_a_token_request_is_invalid_request(app, client, tenant, fields, as_json):
    before = table_counts(app)
    headers = {"X-Tenant-ID": tenant.id}
    if as_json:
        response = client.post("/oauth/token", json=fields, headers=headers)
    else:
        response = client.post("/oauth/token", data=fields, headers=headers)
    body = assert_surface_error(response, 400, "oauth", "invalid_request")
    assert body["error"] == "invalid_request"
    assert table_counts(app) == before


def test_nul_in_a_revoked_token_or_a_basic_secret_is_invalid_request(client, tenant):
    response = client.post("/oauth/revoke", data={"token": "rt_x\x00y"})
    assert (
        assert_surface_error(response, 400, "oauth", "invalid_request")["error"]
        == "invalid_request"
    )
    basic = base64.b64encode(b"id\x00:secret\x00").decode()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code in (400, 401), response.get_data(as_text=True)
    assert_surface_error(response, response.status_code, "oauth", "invalid_client")


@pytest.mark.parametrize(
    ("path", "surface", "who"),
    [
        ("/user/a%00b", "user", "key"),
        ("/user/a%00b/secrets/s%00", "user", "key"),
        ("/users/a%00b", "accounts", "key"),
        ("/api/v1/users/a%00b", "directory", "key"),
        ("/tenants/a%00b", "platform", "root"),
        ("/auth/user?email=a%00b@example.com", "accounts", "key"),
        ("/auth/user?userId=%00", "accounts", "key"),
        ("/audit-events?action=%00", "platform", "key"),
        ("/user/joe/secrets?cursor=%00", "user", "key"),
        ("/users/me?x=%00", "me", "token"),
        ("/api/v2/users/a%00b", "management", "key"),
        ("/api/v2/users?q=%00", "management", "key"),
    ],
)
def test_nul_in_a_path_or_query_is_400_in_the_surface_shape(
    app, client, tenant, user_token, path, surface, who
):
    headers = {
        "key": tenant.headers,
        "root": {"X-APIKEY": ROOT_KEY},
        "token": factories.bearer(user_token),
    }[who]
    # Auth0 names a bad GET by its query string.
    code = (
        "invalid_query_string"
        if surface == "management"
        else expected(surface, "invalid_characters")
    )
    assert_surface_error(client.get(path, headers=headers), 400, surface, code)


@pytest.mark.parametrize("header", ["X-Tenant-ID", "x-m2-organization-id", "X-APIKEY"])
def test_nul_in_a_credential_or_tenant_header_is_400(client, tenant, header):
    headers = {**tenant.headers, header: "abc\x00def"}
    body = assert_surface_error(
        client.get("/user/joe", headers=headers), 400, "user", "invalid_characters"
    )
    assert body["error"] == "invalid_characters"


def test_nul_and_surrogates_in_me_bodies_store_nothing(app, client, tenant, user_token):
    before = table_counts(app)
    headers = factories.bearer(user_token)
    for body in ({"firstname": "Jo\x00"}, {"lastname": "\ud800"}, {"password": "pw\x00pw\x00pw"}):
        raw = json.dumps(body)  # json.dumps writes \\u0000 and \\ud800 escapes
        response = client.patch(
            "/users/me", data=raw, headers=headers, content_type="application/json"
        )
        assert assert_surface_error(response, 400, "me", "INVALID_BODY")["error"] == "INVALID_BODY"
    reset = client.post(
        "/auth/password-reset",
        data=json.dumps({"email": "joe\x00@example.com", "host": "example.com"}),
        headers={"X-Tenant-ID": tenant.id},
        content_type="application/json",
    )
    assert assert_surface_error(reset, 400, "me", "INVALID_BODY")["error"] == "INVALID_BODY"
    assert table_counts(app) == before
    assert client.get("/users/me", headers=headers).get_json()["firstname"] is None


def test_integers_past_64_bits_are_refused(app, client, tenant, root_headers):
    before = table_counts(app)
    for settings in ({"access_token_ttl": 2**64}, {"password_min_length": -(2**63) - 1}):
        response = client.patch(
            f"/tenants/{tenant.id}", json={"settings": settings}, headers=root_headers
        )
        body = assert_surface_error(response, 400, "platform", "validation_failed")
        assert body["error"] == "validation_failed"
    response = client.get(f"/audit-events?limit={2**64}", headers=tenant.headers)
    assert (
        assert_surface_error(response, 400, "platform", "validation_failed")["error"]
        == "validation_failed"
    )
    assert table_counts(app) == before


def test_every_integer_in_a_request_is_bounded_to_64_bits(client):
    """No request field can carry an integer a database integer column would refuse."""
    spec = client.get("/openapi.json").get_json()
    unbounded = []

    def walk(schema: dict[str, Any], where: str) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            return walk(spec["components"]["schemas"][name], f"{where}>{name}")
        if schema.get("type") == "integer":
            low, high = schema.get("minimum"), schema.get("maximum")
            if low is None or high is None or low < -(2**63) or high > 2**63 - 1:
                unbounded.append(where)
        for key, child in schema.get("properties", {}).items():
            walk(child, f"{where}.{key}")
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], f"{where}[]")

    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for parameter in operation.get("parameters", []):
                walk(parameter.get("schema", {}), f"{method} {path} {parameter['name']}")
            for media in operation.get("requestBody", {}).get("content", {}).values():
                walk(media["schema"], f"{method} {path} body")
    assert unbounded == []


def _cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


@pytest.mark.parametrize(
    "key",
    [
        ["2026-01-02T03:04:05", "x"],
        ["2026-01-02", "x"],
        ["2026-01-02T03:04:05+00:00", 5],
        ["2026-01-02T03:04:05+00:00", "a\u0000b"],
        ["2026-01-02T03:04:05+00:00", "\ud800"],
    ],
    ids=["no time zone", "a date", "a number id", "NUL id", "surrogate id"],
)
@pytest.mark.parametrize(
    ("path", "surface"),
    [
        ("/user/joe/secrets", "user"),
        ("/user/joe/properties", "user"),
        ("/audit-events", "platform"),
        ("/api/v1/users", "directory"),
    ],
)
def test_a_forged_cursor_is_400_invalid_cursor(app, client, tenant, key, path, surface):
    factories.make_user(app, tenant.id, user_id="joe", username="joe")
    response = client.get(path, query_string={"cursor": _cursor(key)}, headers=tenant.headers)
    assert_surface_error(response, 400, surface, expected(surface, "invalid_cursor"))


@pytest.mark.parametrize(
    ("method", "path", "surface", "allowed"),
    [
        ("put", "/healthz", "platform", {"GET"}),
        ("delete", "/tenants", "platform", {"POST"}),
        ("post", "/user/joe/profile", "user", {"GET"}),
        ("patch", "/user/joe/secrets", "user", {"GET", "POST"}),
        ("put", "/auth/user", "accounts", {"GET", "POST"}),
        ("post", "/users/me/settings", "me", {"PUT"}),
        ("get", "/auth/password-reset", "me", {"POST"}),
        ("get", "/oauth/token", "oauth", {"POST"}),
        ("post", "/.well-known/jwks.json", "oauth", {"GET"}),
        ("patch", "/api/v1/users/joe/password", "directory", {"PUT"}),
        ("put", "/api/v2/users", "management", {"GET", "POST"}),
    ],
)
def test_every_405_names_the_allowed_methods(client, method, path, surface, allowed):
    response = getattr(client, method)(path)
    # OAuth's dialect has no 405 of its own; the directory and me APIs use upper case.
    upper = "METHOD_NOT_ALLOWED"
    code = {"oauth": "invalid_request", "directory": upper, "me": upper}.get(
        surface, "method_not_allowed"
    )
    assert_surface_error(response, 405, surface, code)
    methods = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed <= methods and method.upper() not in methods, response.headers["Allow"]


LONG = "A" * 5000  # over core.inputs.MAX_URL_BYTES (4096)


@pytest.mark.parametrize(
    ("path", "surface", "code"),
    [
        (f"/api/v1/users?cursor={LONG}", "directory", "URI_TOO_LONG"),
        (f"/api/v2/users/u1?fields={LONG}", "management", "uri_too_long"),
        (f"/user/profile?x={LONG}", "user", "uri_too_long"),
        (f"/users/me?x={LONG}", "me", "URI_TOO_LONG"),
        (f"/auth/user?email={LONG}", "accounts", "uri_too_long"),
        (f"/{LONG}", "platform", "uri_too_long"),  # no route: the default shape
    ],
)
def test_an_over_long_url_is_414_in_the_surface_shape(client, tenant, path, surface, code):
    """Issue 22: gunicorn answered these with its own HTML 414 page."""
    assert_surface_error(client.get(path, headers=tenant.headers), 414, surface, code)


def test_every_operation_documents_the_414(client):
    spec = client.get("/openapi.json").get_json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            answer = operation["responses"].get("414")
            assert answer and "application/json" in answer["content"], (method, path)


def test_gunicorn_lets_the_app_answer_a_5000_byte_cursor(app, tenant, tmp_path):
    """Through a real gunicorn (gunicorn.conf.py): the request line passes its limit and
    the app answers in the surface's JSON; a URL under the app's limit is answered as
    usual (a cursor over its documented 512 characters: 400 naming the field)."""
    import requests

    admin = factories.bearer(tenant.key)
    # One worker: the request-line limit is gunicorn.conf.py's, the same in every worker.
    env = factories.process_env(app)
    with factories.gunicorn(env, tmp_path / "g.log", "--workers", "1") as base:
        listed = requests.get(f"{base}/api/v1/users", params={"cursor": LONG}, headers=admin)
        fields = requests.get(f"{base}/api/v2/users/u1", params={"fields": LONG}, headers=admin)
        forged = requests.get(f"{base}/api/v1/users", params={"cursor": "B" * 4000}, headers=admin)
    assert listed.status_code == 414 and listed.headers["Content-Type"] == "application/json"
    assert listed.json()["code"] == "URI_TOO_LONG", listed.text
    assert fields.status_code == 414 and fields.json()["statusCode"] == 414, fields.text
    assert forged.status_code == 400 and forged.json()["code"] == "VALIDATION_FAILED", forged.text
    assert "cursor" in forged.json()["fields"]
