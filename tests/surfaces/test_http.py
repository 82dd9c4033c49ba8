"""Cross-surface HTTP behaviour: JSON errors for every status, request ids, slashes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from tests.conftest import make_config
from tests.factories import TenantHandle


def test_unknown_route_and_wrong_method_are_json(client: FlaskClient) -> None:
    r = client.get("/no/such/route")
    assert r.status_code == 404
    assert r.is_json and r.get_json()["error"] == "not_found"
    r = client.put("/healthz", json={})
    assert r.status_code == 405
    assert r.is_json and r.get_json()["error"] == "method_not_allowed"


def test_unknown_route_with_a_form_body_is_404_not_415(client: FlaskClient) -> None:
    r = client.post("/nowhere", data={"a": "b"})
    assert r.status_code == 404


def test_request_id_is_generated_or_echoed(client: FlaskClient) -> None:
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 32
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    hostile = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert hostile.headers["X-Request-ID"] != "bad id <script>"
    assert len(hostile.headers["X-Request-ID"]) == 32
    errored = client.get("/missing", headers={"X-Request-ID": "req-42"})
    assert errored.headers["X-Request-ID"] == "req-42"
    assert errored.get_json()["request_id"] == "req-42"


def test_trailing_slash_answers_without_redirect(client: FlaskClient, tenant: TenantHandle) -> None:
    created = client.post("/auth/user/", json={"uid": "slash"}, headers=tenant.m2_headers)
    assert created.status_code == 200
    for path in ("/users/slash", "/users/slash/", "/auth/user/?userId=slash"):
        r = client.get(path, headers=tenant.m2_headers)
        assert r.status_code == 200, path
    assert client.get("/healthz/").status_code == 200


def test_unexpected_error_is_500_json_with_request_id(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app: Flask = create_app(make_config(database_url, tmp_path))

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("kaboom with secret-value")

    with caplog.at_level(logging.ERROR, logger="app"):
        r = app.test_client().get("/boom", headers={"X-Request-ID": "trace-1"})
    assert r.status_code == 500
    body = r.get_json()
    assert body["error"] == "internal_error"
    assert body["request_id"] == "trace-1"
    assert "kaboom" not in r.get_data(as_text=True)
    assert any("trace-1" in rec.getMessage() for rec in caplog.records)


def test_body_too_large_is_413(client: FlaskClient, tenant: TenantHandle) -> None:
    r = client.post(
        "/auth/user",
        data=b'{"uid": "' + b"a" * (1024 * 1024 + 10) + b'"}',
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.get_json()["error"] == "payload_too_large"


def test_non_json_body_is_415(client: FlaskClient, tenant: TenantHandle) -> None:
    r = client.post(
        "/auth/user", data="uid=x", headers={**tenant.headers, "Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    form = client.post("/auth/user", data={"uid": "x"}, headers=tenant.headers)
    assert form.status_code == 415
    assert client.get("/users/x", headers=tenant.headers).status_code == 404
