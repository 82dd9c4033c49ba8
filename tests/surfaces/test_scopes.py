"""The scope catalogue: one list in the code; API keys take only catalogued scopes or `*`
(400 otherwise, API and CLI); the README lists every scope (issue 17, finding 6)."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from app.core import scopes
from tests import factories
from tests.factories import TenantHandle


def test_unknown_scopes_are_400_at_key_creation(
    client: FlaskClient, root_headers: dict[str, str], tenant: TenantHandle
) -> None:
    for bad in (["read:user"], ["read:users", "bogus scope!"], ["read:table:orders"], [""]):
        r = client.post(
            f"/tenants/{tenant.id}/api-keys", json={"scopes": bad}, headers=root_headers
        )
        body = factories.assert_error(r, 400, "validation_failed")
        assert body["error"] == "validation_failed"
        [message] = next(iter(body["fields"]["scopes"].values()))
        assert "Unknown scope" in message
    keys = client.get(f"/tenants/{tenant.id}/api-keys", headers=root_headers).get_json()
    assert len(keys) == 1  # only the fixture's key: nothing was stored


def test_an_unknown_scope_names_the_closest_catalogue_entry(
    client: FlaskClient, root_headers: dict[str, str], tenant: TenantHandle
) -> None:
    r = client.post(
        f"/tenants/{tenant.id}/api-keys", json={"scopes": ["read:user"]}, headers=root_headers
    )
    [message] = factories.assert_error(r, 400, "validation_failed")["fields"]["scopes"]["0"]
    assert (
        message == "Unknown scope 'read:user'; did you mean 'read:users'? see the scope catalogue"
    )
    far = client.post(
        f"/tenants/{tenant.id}/api-keys", json={"scopes": ["launch:missiles"]}, headers=root_headers
    )
    [message] = factories.assert_error(far, 400, "validation_failed")["fields"]["scopes"]["0"]
    assert "did you mean" not in message  # nothing close: no guess


def test_catalogued_scopes_and_the_wildcard_are_accepted(
    client: FlaskClient, root_headers: dict[str, str], tenant: TenantHandle
) -> None:
    for good in (["*"], list(scopes.KEY_SCOPES[1:]), ["read:audit", "create:user_tokens"]):
        r = client.post(
            f"/tenants/{tenant.id}/api-keys", json={"scopes": good}, headers=root_headers
        )
        assert r.status_code == 201, r.get_data(as_text=True)
        assert r.get_json()["scopes"] == sorted(set(good))


def test_the_cli_refuses_unknown_scopes(app: Flask, tenant: TenantHandle) -> None:
    runner = app.test_cli_runner()
    bad = runner.invoke(args=["keys", "create", tenant.id, "--scopes", "bogus scope!"])
    assert bad.exit_code == 1
    assert "Unknown scope 'bogus'" in bad.output
    typo = runner.invoke(args=["keys", "create", tenant.id, "--scopes", "write:secret"])
    assert typo.exit_code == 1 and "did you mean 'write:secrets'" in typo.output
    good = runner.invoke(args=["keys", "create", tenant.id, "--scopes", "read:users,write:secrets"])
    assert good.exit_code == 0, good.output


def test_openapi_lists_the_catalogue_as_the_scope_enum(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    schema = spec["components"]["schemas"]["platform.CreateApiKey"]["properties"]["scopes"]["items"]
    assert schema["enum"] == list(scopes.KEY_SCOPES)


def test_user_tokens_hold_the_catalogue_scopes(app: Flask, client: FlaskClient, tenant) -> None:
    factories.make_user(
        app,
        tenant.id,
        user_id="adm",
        username="adm",
        password="admin-pass-1",
        permissions_group="admin",
    )
    token = factories.sign_in(client, tenant.id, "adm", "admin-pass-1")
    held = set(token["scope"].split())
    assert held == {s.name for s in scopes.CATALOGUE if s.holders in (scopes.USER, scopes.ADMIN)}


def test_the_readme_lists_every_scope_with_what_it_allows() -> None:
    readme = (factories.PROJECT_ROOT / "docs" / "api" / "README.md").read_text()
    section = readme.split("\n## Scope catalogue", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([a-z_:*]+)` \| [^|]+ \| ([^|]+) \|$", section, re.M))
    assert set(rows) == {s.name for s in scopes.CATALOGUE} | {"*"}
    assert all(text.strip() for text in rows.values())
