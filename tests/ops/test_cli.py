"""Operator CLI: bootstrap (idempotent), tenants create, keys create / revoke."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ROOT_KEY


def _field(output: str, label: str) -> str:
    match = re.search(rf"{label}\s*:\s*(\S+)", output)
    assert match, output
    return match.group(1)


def test_bootstrap_is_idempotent_and_prints_working_keys(app: Flask, client: FlaskClient) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["bootstrap"])
    assert first.exit_code == 0, first.output
    tenant_id = _field(first.output, "Demo tenant id")
    api_key = _field(first.output, "Demo API key")
    assert _field(first.output, "Root API key") == ROOT_KEY

    second = runner.invoke(args=["bootstrap"])
    assert second.exit_code == 0, second.output
    assert _field(second.output, "Demo tenant id") == tenant_id
    assert _field(second.output, "Demo API key") == api_key

    r = client.post("/auth/user", json={"uid": "demo-user"}, headers={"X-APIKEY": api_key})
    assert r.status_code == 200
    keys = client.get(f"/tenants/{tenant_id}/api-keys", headers={"X-APIKEY": ROOT_KEY})
    assert len(keys.get_json()) == 1


def test_tenants_and_keys_commands(app: Flask, client: FlaskClient) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(args=["tenants", "create", "Initech"])
    assert created.exit_code == 0, created.output
    tenant_id = created.output.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", tenant_id)

    key_out = runner.invoke(
        args=["keys", "create", tenant_id, "--name", "reader", "--scopes", "read:users"]
    )
    assert key_out.exit_code == 0, key_out.output
    key_id = _field(key_out.output, "id")
    raw_key = _field(key_out.output, "key")
    headers = {"x-api-key": raw_key, "x-m2-organization-id": tenant_id}
    assert client.get("/auth/user?userId=x", headers=headers).status_code == 200
    assert client.post("/auth/user", json={}, headers=headers).status_code == 403

    revoked = runner.invoke(args=["keys", "revoke", key_id])
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/auth/user?userId=x", headers=headers).status_code == 401


def test_cli_errors_are_clear(app: Flask) -> None:
    runner = app.test_cli_runner()
    missing = runner.invoke(args=["keys", "create", "no-such-tenant"])
    assert missing.exit_code != 0
    assert "Tenant not found" in missing.output
    unknown = runner.invoke(args=["keys", "revoke", "nope"])
    assert unknown.exit_code != 0
    assert "API key not found" in unknown.output
