"""Auth0 jobs and connections on the management surface (issue 24), driven by the official
`auth0-python` SDK unchanged over real HTTP where it can be, and by raw requests where the
point is the wire (a Content-Length refused before the body is read): the connection list,
import jobs run by a real Celery worker (one user per foreign algorithm, each signing in and
rehashed to argon2id), per-user errors, failed files with their byte offset, exports, and
every bad input's own answer."""

from __future__ import annotations

import base64
import gzip
import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from auth0.management.core.api_error import ApiError

from tests import factories, hashes
from tests.factories import PASSWORD, auth0_client, bearer, sign_in

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


def import_file(sdk: Any, users: Any, **options: Any) -> Any:
    """Start an import of `users` (a list, dumped as JSON, or bytes as they are)."""
    content = users if isinstance(users, bytes) else json.dumps(users).encode()
    return sdk.jobs.users_imports.create(
        users=("users.json", content, "application/json"),
        connection_id=options.pop("connection_id", None) or connection_id_of(sdk),
        **options,
    )


def finished(sdk: Any, job_id: str, timeout: float = 60) -> Any:
    """The job once the worker has finished it (completed or failed)."""

    def done() -> Any:
        job = sdk.jobs.get(job_id)
        return job if job.status in ("completed", "failed") else None

    job = factories.wait_until(done, timeout=timeout)
    assert job is not None, sdk.jobs.get(job_id)
    return job


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
    body = response.json()
    assert (body["statusCode"], body["errorCode"]) == (413, "payload_too_large"), body


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
    # Parts without a name, or whose name werkzeug cannot parse (the schema fuzzer's find,
    # once a 500 from the text guard): a 400.
    for disposition in ("form-data", "form-data; name=", 'form-data; name="a\nb"'):
        garbled = client.post(
            IMPORTS,
            headers={**headers, "Content-Type": "multipart/form-data; boundary=b0undary"},
            data=(
                f"--b0undary\r\nContent-Disposition: {disposition}\r\n\r\n{{}}\r\n--b0undary--\r\n"
            ).encode(),
        )
        management_error(garbled, 400, "invalid_body")
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


# --- import jobs run by the worker


def test_sdk_imports_one_user_per_algorithm_and_each_signs_in_rehashed_to_argon2id(
    client, base_url, tenant, celery_worker
):
    sdk = auth0_client(base_url, tenant.key)
    users = hashes.auth0_users(PASSWORD)
    assert len(users) == len(hashes.ALGORITHMS) == 14
    created = import_file(sdk, users, external_id="migration-1", send_completion_email=False)
    assert (created.status, created.type) == ("pending", "users_import")
    assert created.id.startswith("job_") and created.external_id == "migration-1"
    assert created.connection_id == connection_id_of(sdk) and created.created_at

    job = finished(sdk, created.id)
    assert job.status == "completed", job
    summary = (job.summary.inserted, job.summary.updated, job.summary.failed)
    assert summary == (14, 0, 0), sdk.jobs.errors.get(created.id)
    assert job.summary.total == 14 and job.percentage_done == 100
    assert (job.id, job.type, job.connection_id) == (
        created.id,
        "users_import",
        created.connection_id,
    )
    assert sdk.jobs.errors.get(created.id) is None  # no errors: an empty answer (204)

    directory = bearer(tenant.key)
    for user in users:
        name = user["username"]
        wrong = client.post(
            "/oauth/token",
            headers={"X-Tenant-ID": tenant.id},
            data={"grant_type": "password", "username": name, "password": PASSWORD + "!"},
        )
        assert wrong.status_code in (400, 401, 403), (name, wrong.get_json())
        assert sign_in(client, tenant.id, name)["access_token"], name
        stored = client.get(f"/api/v1/users/{name}", headers=directory).get_json()
        decoded = base64.b64decode(stored["password_hash"], validate=True).decode()
        assert decoded.startswith("$argon2id$"), (name, decoded[:12])
        assert sign_in(client, tenant.id, name)["access_token"], name
        assert sign_in(client, tenant.id, user["email"])["access_token"], name


def test_job_errors_are_per_user_and_the_others_are_imported(base_url, tenant, celery_worker):
    sdk = auth0_client(base_url, tenant.key)
    good = {"email": "good@example.com", "username": "good", "email_verified": True}
    users = [
        good,
        {"given_name": "nobody", "email_verified": True},  # neither email nor username
        {
            "email": "odd@example.com",
            "custom_password_hash": {"algorithm": "rot13", "hash": {"value": "nope"}},
        },
        {"email": "bad@example.com", "password_hash": "$2b$10$not-a-bcrypt-hash"},
        {"email": "GOOD@example.com", "username": "twin"},  # the first user's email again
        {"email": "fine@example.com", **hashes.ALGORITHMS["sha512"](PASSWORD)},
    ]
    job = finished(sdk, import_file(sdk, users).id)
    assert job.status == "completed", job
    assert (job.summary.inserted, job.summary.failed, job.summary.total) == (2, 4, 6)
    errors = sdk.jobs.errors.get(job.id)
    assert isinstance(errors, list) and len(errors) == 4, errors
    by_user = [(e.user, [(x.code, x.path) for x in e.errors]) for e in errors]
    assert by_user[0][0] == {"given_name": "nobody", "email_verified": True}
    assert "ANY_OF_MISSING" in [code for code, _ in by_user[0][1]]
    assert by_user[1][0] == {"email": "odd@example.com"}  # the hash is never shown
    assert [code for code, _ in by_user[1][1]] == ["UNSUPPORTED_HASH"]
    assert by_user[2][0] == {"email": "bad@example.com"}
    assert [code for code, _ in by_user[2][1]] == ["INVALID_HASH"]
    assert by_user[3][0]["username"] == "twin"
    assert by_user[3][1] == [("DUPLICATED_USER", "email")]
    for entry in errors:
        assert all(x.message for x in entry.errors)
    assert "not-a-bcrypt" not in json.dumps([e.dict() for e in errors])


@pytest.mark.parametrize(
    ("content", "offset", "inserted"),
    [
        (b"this is not JSON at all", 0, 0),
        # Cut halfway through the second user: the first is imported, the offset is the end.
        (b'[{"email": "first@example.com"}, {"email": "second@exa', 54, 1),
    ],
    ids=["not-json", "truncated"],
)
def test_an_unreadable_file_fails_the_job_with_the_byte_offset(
    base_url, tenant, celery_worker, content, offset, inserted
):
    sdk = auth0_client(base_url, tenant.key)
    job = finished(sdk, import_file(sdk, content).id)
    assert job.status == "failed", job
    assert f"at byte {offset}" in job.status_details, job.status_details
    assert job.summary.inserted == inserted
    failure = sdk.jobs.errors.get(job.id)
    assert failure.status == "failed" and failure.id == job.id
    assert failure.status_details == job.status_details
    assert failure.type == "users_import" and failure.connection_id == job.connection_id


def test_another_tenants_job_is_404(base_url, tenant, other_tenant, celery_worker):
    mine = auth0_client(base_url, tenant.key)
    created = import_file(mine, [{"email": "mine@example.com"}])
    theirs = auth0_client(base_url, other_tenant.key)
    assert_auth0_error(api_error(theirs.jobs.get, created.id), 404, "inexistent_job")
    assert_auth0_error(api_error(theirs.jobs.errors.get, created.id), 404, "inexistent_job")
    # The root key naming the other tenant does not find it either.
    from tests.conftest import ROOT_KEY

    root = auth0_client(base_url, ROOT_KEY, other_tenant.id)
    assert_auth0_error(api_error(root.jobs.get, created.id), 404, "inexistent_job")
    assert finished(mine, created.id).status == "completed"


def test_upsert_through_the_sdk_updates_and_job_reads_need_a_users_scope(
    app, base_url, tenant, celery_worker
):
    sdk = auth0_client(base_url, tenant.key)
    first = finished(sdk, import_file(sdk, [{"email": "up@example.com", "given_name": "A"}]).id)
    assert first.summary.inserted == 1
    again = import_file(sdk, [{"email": "up@example.com", "given_name": "B"}], upsert=True)
    done = finished(sdk, again.id)
    assert (done.summary.inserted, done.summary.updated, done.summary.failed) == (0, 1, 0)
    [user] = sdk.users.list_users_by_email(email="up@example.com")
    assert user.given_name == "B"
    outsider = auth0_client(base_url, factories.make_key(app, tenant.id, ["read:connections"]))
    assert_auth0_error(api_error(outsider.jobs.get, again.id), 403, "insufficient_scope")
    creator = auth0_client(base_url, factories.make_key(app, tenant.id, ["create:users"]))
    assert creator.jobs.get(again.id).status == "completed"


# --- export jobs


def test_sdk_exports_users_and_the_location_downloads_without_credentials(
    app, base_url, tenant, other_tenant, celery_worker
):
    sdk = auth0_client(base_url, tenant.key)
    for number in range(3):
        sdk.users.create(
            connection=CONNECTION,
            user_id=f"x{number}",
            email=f"x{number}@example.com",
            username=f"x{number}",
            password=PASSWORD,
            given_name=f"X{number}",
            user_metadata={"n": number},
        )
    factories.make_user(app, other_tenant.id, username="stranger", email="s@example.com")
    fields = [
        {"name": "user_id"},
        {"name": "email", "export_as": "mail"},
        {"name": "given_name"},
        {"name": "user_metadata.n", "export_as": "n"},
    ]
    created = sdk.jobs.users_exports.create(
        connection_id=connection_id_of(sdk), format="json", fields=fields
    )
    assert (created.status, created.type, created.format) == ("pending", "users_export", "json")
    assert [(f.name, f.export_as) for f in created.fields] == [
        ("user_id", None),
        ("email", "mail"),
        ("given_name", None),
        ("user_metadata.n", "n"),
    ]
    job = finished(sdk, created.id)
    assert job.status == "completed" and job.location, job
    location = urlsplit(job.location)
    assert f"{location.scheme}://{location.netloc}" == app.config["ISSUER"]
    # Plain HTTP, no credentials: the signed link is the authority.
    import httpx

    response = httpx.get(f"{base_url}{location.path}?{location.query}")
    assert response.status_code == 200, response.text
    lines = gzip.decompress(response.content).decode().splitlines()
    rows = sorted((json.loads(line) for line in lines), key=lambda row: row["user_id"])
    assert rows == [
        {"user_id": f"x{n}", "mail": f"x{n}@example.com", "given_name": f"X{n}", "n": n}
        for n in range(3)
    ]
    assert b"argon2" not in response.content
    # Another tenant does not see the job; a tampered link is refused.
    theirs = auth0_client(base_url, other_tenant.key)
    assert_auth0_error(api_error(theirs.jobs.get, created.id), 404, "inexistent_job")
    tampered = httpx.get(f"{base_url}{location.path}?sig=x{location.query[5:]}")
    assert tampered.status_code in (403, 404), tampered.text


def test_the_document_describes_the_multipart_import(client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/api/v2/jobs/users-imports"]["post"]
    [(media, body)] = operation["requestBody"]["content"].items()
    assert media == "multipart/form-data"
    name = body["schema"]["$ref"].rsplit("/", 1)[1]
    schema = spec["components"]["schemas"][name]
    assert schema["properties"]["users"] == {
        "type": "string",
        "format": "binary",
        "description": "A JSON array of users in Auth0's bulk-import schema",
    }
    assert set(schema["required"]) == {"users", "connection_id"}
    assert {"upsert", "external_id", "send_completion_email"} <= set(schema["properties"])
    assert {201, 400, 401, 403, 413, 415} <= {int(status) for status in operation["responses"]}
    errors = spec["paths"]["/api/v2/jobs/{job_id}/errors"]["get"]
    assert {200, 204, 404} <= {int(status) for status in errors["responses"]}
    assert "read:connections" in json.dumps(spec["paths"]["/api/v2/connections"]["get"])
