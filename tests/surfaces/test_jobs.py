"""Auth0 jobs and connections on the management surface (issue 24), driven by the official
`auth0-python` SDK unchanged over real HTTP where it can be, and by raw requests where the
point is the wire (a Content-Length refused before the body is read): the connection list,
import jobs run by a real Celery worker (one user per foreign algorithm, each signing in and
rehashed to argon2id), per-user errors, failed files with their byte offset, exports, and
every bad input's own answer."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from auth0.management.core.api_error import ApiError

from tests import factories
from tests.factories import auth0_client

CONNECTION = "Username-Password-Authentication"
IMPORTS = "/api/v2/jobs/users-imports"


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


def management_error(response: Any, status: int, code: str) -> dict:
    return factories.assert_surface_error(response, status, "management", code)


def connection_id_of(sdk: Any) -> str:
    [connection] = list(sdk.connections.list(strategy="auth0"))
    return connection.id


def upload(client: Any, headers: dict[str, str], users: bytes, **fields: str) -> Any:
    data: dict[str, Any] = {"users": (io.BytesIO(users), "users.json"), **fields}
    return client.post(IMPORTS, headers=headers, data=data, content_type="multipart/form-data")


# --- connections


def test_sdk_lists_the_one_database_connection(base_url, tenant, other_tenant):
    sdk = auth0_client(base_url, tenant.key)
    connections = list(sdk.connections.list())
    assert [(c.name, c.strategy) for c in connections] == [(CONNECTION, "auth0")]
    [connection] = connections
    assert connection.id.startswith("con_") and len(connection.id) == 20
    assert connection.realms == [CONNECTION] and connection.is_domain_connection is False
    # Stable for the tenant, different for another.
    assert connection_id_of(sdk) == connection.id
    assert connection_id_of(auth0_client(base_url, other_tenant.key)) != connection.id
    # Filters: another strategy or name finds nothing.
    assert list(sdk.connections.list(strategy="google-oauth2")) == []
    assert list(sdk.connections.list(strategy=["google-oauth2", "auth0"])) == connections
    assert list(sdk.connections.list(name=CONNECTION)) == connections
    assert list(sdk.connections.list(name="other")) == []
    # One connection by id; another id is Auth0's 404.
    got = sdk.connections.get(connection.id)
    assert (got.id, got.name, got.enabled_clients) == (connection.id, CONNECTION, [])
    other_id = connection_id_of(auth0_client(base_url, other_tenant.key))
    assert_auth0_error(api_error(sdk.connections.get, other_id), 404, "inexistent_connection")


def test_connection_list_shapes_and_scope(app, client, tenant):
    headers = {"Authorization": f"Bearer {tenant.key}"}
    bare = client.get("/api/v2/connections", headers=headers)
    assert bare.status_code == 200 and [c["name"] for c in bare.get_json()] == [CONNECTION]
    totals = client.get("/api/v2/connections?include_totals=true", headers=headers).get_json()
    assert (totals["total"], totals["start"], totals["length"]) == (1, 0, 1)
    picked = client.get("/api/v2/connections?fields=id,strategy", headers=headers).get_json()
    assert set(picked[0]) == {"id", "strategy"}
    past = client.get("/api/v2/connections?page=1&per_page=1", headers=headers).get_json()
    assert past == []
    key = factories.make_key(app, tenant.id, ["read:users"])
    refused = client.get("/api/v2/connections", headers={"Authorization": f"Bearer {key}"})
    management_error(refused, 403, "insufficient_scope")
    allowed = factories.make_key(app, tenant.id, ["read:connections"])
    ok = client.get("/api/v2/connections", headers={"Authorization": f"Bearer {allowed}"})
    assert ok.status_code == 200


# --- import: bad input answered before any job exists


def test_a_file_over_the_limit_is_413_from_content_length_before_the_body_is_read(
    app, base_url, tenant
):
    limit = app.config["IMPORT_MAX_BYTES"]
    assert limit == 100 * 1024 * 1024  # the default
    before = factories.table_counts(app)["transfer_job"]
    with socket.create_connection(("127.0.0.1", int(base_url.rsplit(":", 1)[1])), 5) as conn:
        head = (
            f"POST {IMPORTS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tenant.key}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {limit + 1}\r\n\r\n"
        )
        conn.sendall(head.encode())
        started = time.monotonic()
        conn.settimeout(5)
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            piece = conn.recv(65536)
            if not piece:
                break
            received += piece
        elapsed = time.monotonic() - started
    # Answered at once, without waiting for 100 MiB that never come.
    assert elapsed < 2, elapsed
    head_part, _, body_part = received.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 413"), received[:200]
    body = json.loads(body_part)
    assert body["statusCode"] == 413 and body["error"] == "Request Entity Too Large", body
    assert body["errorCode"] == "payload_too_large" and str(limit) in body["message"]
    assert factories.table_counts(app)["transfer_job"] == before


def test_a_small_limit_refuses_a_real_upload_through_the_sdk(deployment, tenant):
    process = deployment(IMPORT_MAX_BYTES="1000")
    handle = factories.make_tenant(process, "small")
    with factories.serve(process) as url:
        sdk = auth0_client(url, handle.key)
        users = json.dumps([{"email": f"u{i}@example.com"} for i in range(100)]).encode()
        assert len(users) > 1000
        error = api_error(
            sdk.jobs.users_imports.create,
            users=("users.json", users, "application/json"),
            connection_id=connection_id_of(sdk),
        )
    body = assert_auth0_error(error, 413, "payload_too_large")
    assert "1000" in body["message"]


def test_a_chunked_upload_over_the_limit_is_413_as_it_streams(deployment):
    process = deployment(IMPORT_MAX_BYTES="2000")
    handle = factories.make_tenant(process, "chunky")
    with factories.serve(process) as url:
        import httpx

        connection = json.loads(
            httpx.get(
                f"{url}/api/v2/connections", headers={"Authorization": f"Bearer {handle.key}"}
            ).text
        )[0]["id"]
        boundary = "xyz"
        parts = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="connection_id"\r\n\r\n'
            f"{connection}\r\n--{boundary}\r\n"
            'Content-Disposition: form-data; name="users"; filename="u.json"\r\n'
            "Content-Type: application/json\r\n\r\n"
        ).encode()

        def body() -> Iterator[bytes]:  # no length: httpx sends it chunked
            yield parts
            for _ in range(10):
                yield b" " * 1000
            yield f"[]\r\n--{boundary}--\r\n".encode()

        response = httpx.post(
            f"{url}{IMPORTS}",
            content=body(),
            headers={
                "Authorization": f"Bearer {handle.key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
    assert response.status_code == 413, response.text
    assert response.json()["statusCode"] == 413


def test_import_bad_requests_each_get_their_answer(app, client, tenant, other_tenant):
    headers = {"Authorization": f"Bearer {tenant.key}"}
    connection = client.get("/api/v2/connections", headers=headers).get_json()[0]["id"]
    others = client.get(
        "/api/v2/connections", headers={"Authorization": f"Bearer {other_tenant.key}"}
    ).get_json()[0]["id"]
    # Not multipart.
    as_json = client.post(IMPORTS, headers=headers, json={"connection_id": connection})
    management_error(as_json, 415, "unsupported_media_type")
    # No users part; users as a plain field; no connection_id.
    missing = client.post(
        IMPORTS,
        headers=headers,
        data={"connection_id": connection},
        content_type="multipart/form-data",
    )
    assert "users" in management_error(missing, 400, "invalid_body")["message"]
    plain = client.post(
        IMPORTS,
        headers=headers,
        data={"connection_id": connection, "users": "[]"},
        content_type="multipart/form-data",
    )
    assert "users" in management_error(plain, 400, "invalid_body")["message"]
    no_connection = upload(client, headers, b"[]")
    assert "connection_id" in management_error(no_connection, 400, "invalid_body")["message"]
    # A malformed connection id, and another tenant's (well-formed, but not this tenant's).
    malformed = upload(client, headers, b"[]", connection_id="Username-Password-Authentication")
    assert "connection_id" in management_error(malformed, 400, "invalid_body")["message"]
    foreign = upload(client, headers, b"[]", connection_id=others)
    body = management_error(foreign, 400, "inexistent_connection")
    assert body["message"] == "The connection does not exist"
    # Booleans are `true`/`false`, as the SDK sends them.
    yes = upload(client, headers, b"[]", connection_id=connection, upsert="yes")
    assert "upsert" in management_error(yes, 400, "invalid_body")["message"]
    assert factories.table_counts(app)["transfer_job"] == 0


def test_import_scopes(app, client, tenant):
    connection = client.get(
        "/api/v2/connections", headers={"Authorization": f"Bearer {tenant.key}"}
    ).get_json()[0]["id"]
    reader = factories.make_key(app, tenant.id, ["read:users", "read:connections"])
    refused = upload(client, {"Authorization": f"Bearer {reader}"}, b"[]", connection_id=connection)
    management_error(refused, 403, "insufficient_scope")
    creator = factories.make_key(app, tenant.id, ["create:users"])
    upsert = upload(
        client,
        {"Authorization": f"Bearer {creator}"},
        b"[]",
        connection_id=connection,
        upsert="true",
    )
    assert "update:users" in management_error(upsert, 403, "insufficient_scope")["message"]
    assert factories.table_counts(app)["transfer_job"] == 0
    anonymous = upload(client, {}, b"[]", connection_id=connection)
    assert anonymous.status_code == 401


# --- jobs by id


@pytest.mark.parametrize("job_id", ["job_0000000000000000", "nope", "job_" + "x" * 200])
def test_unknown_and_malformed_job_ids_are_404(base_url, tenant, job_id):
    sdk = auth0_client(base_url, tenant.key)
    assert_auth0_error(api_error(sdk.jobs.get, job_id), 404, "inexistent_job")
    assert_auth0_error(api_error(sdk.jobs.errors.get, job_id), 404, "inexistent_job")


def test_export_bad_requests(app, base_url, tenant, other_tenant):
    sdk = auth0_client(base_url, tenant.key)
    error = api_error(sdk.jobs.users_exports.create, format="xml")
    assert "format" in assert_auth0_error(error, 400, "invalid_body")["message"]
    error = api_error(
        sdk.jobs.users_exports.create,
        connection_id=connection_id_of(auth0_client(base_url, other_tenant.key)),
        format="json",
    )
    assert_auth0_error(error, 400, "inexistent_connection")
    error = api_error(sdk.jobs.users_exports.create, format="json", limit=0)
    assert "limit" in assert_auth0_error(error, 400, "invalid_body")["message"]
    creator = auth0_client(base_url, factories.make_key(app, tenant.id, ["create:users"]))
    error = api_error(creator.jobs.users_exports.create, format="json")
    assert_auth0_error(error, 403, "insufficient_scope")
