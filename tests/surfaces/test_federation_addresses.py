"""Outbound address checks for a connection's provider (issue 27, SSRF): with production's
rules (FEDERATION_ALLOW_PRIVATE_TARGETS and FEDERATION_ALLOW_HTTP off) a connection's URLs
must resolve to public addresses only, when it is created or changed and again before
every call upstream (discovery, JWKS, token), since the discovery document names URLs of
its own and where a name resolves can change. Test names resolve in-process (FakeDns from
the webhook tests, whose rules these share: app/core/outbound.py); the loopback guard
proves nothing tried to connect beyond loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core.outbound import OutboundRefused, is_public, resolve_checked
from app.federation import upstream
from app.federation.upstream import FederationError, Provider
from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.federation_support import Idp, make_connection, running_idp, upstream_sign_in
from tests.oauth_support import authorize_query, pkce_pair, query_of
from tests.webhooks.support import PUBLIC_ADDRESS, FakeDns, LoopbackGuard

CONNECTIONS = "/api/v2/connections"
NAMES = {
    "idp.example.test": [PUBLIC_ADDRESS],
    "idp.internal.test": ["10.0.0.5"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": [PUBLIC_ADDRESS, "192.168.1.9"],
    "ula.test": ["fd12:3456::1"],
}


@pytest.fixture()
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    fake = FakeDns(answers={name: list(addresses) for name, addresses in NAMES.items()})
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture()
def loopback_only() -> Iterator[None]:
    LoopbackGuard.on()
    yield
    outside = LoopbackGuard.off()
    assert outside == [], f"connections beyond loopback were attempted: {outside}"


@pytest.fixture()
def production_rules(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "FEDERATION_ALLOW_PRIVATE_TARGETS", False)
    monkeypatch.setitem(app.config, "FEDERATION_ALLOW_HTTP", False)


@pytest.fixture()
def web_app(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, redirect_uris=["https://app.test/cb"])


def _create(client: FlaskClient, tenant: TenantHandle, **options: Any) -> Any:
    body = {
        "name": "corp",
        "strategy": "oidc",
        "options": {"client_id": "rp", "client_secret": "s3cr3t-0123456789", **options},
    }
    return client.post(CONNECTIONS, json=body, headers={"Authorization": f"Bearer {tenant.key}"})


def _listed(client: FlaskClient, tenant: TenantHandle) -> list[str]:
    answer = client.get(CONNECTIONS, headers={"Authorization": f"Bearer {tenant.key}"})
    return [row["name"] for row in answer.get_json()][1:]  # after the database connection


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.5", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1"]
    + ["0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1"]
    + ["64:ff9b::a9fe:a9fe", "fec0::1", "not-an-address"],
)
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert is_public(address) is False


@pytest.mark.parametrize("address", [PUBLIC_ADDRESS, "2606:2800:220:1::1", "8.8.8.8"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(address) is True


def test_resolve_checked_applies_both_rules(dns: FakeDns) -> None:
    target = resolve_checked(
        "https://idp.example.test:8443/x?y=1", allow_private=False, allow_http=False
    )
    assert (target.host, target.port, target.path, target.address) == (
        "idp.example.test",
        8443,
        "/x?y=1",
        PUBLIC_ADDRESS,
    )
    with pytest.raises(OutboundRefused, match="private"):
        resolve_checked("https://mixed.test/", allow_private=False, allow_http=False)
    with pytest.raises(OutboundRefused, match="scheme"):
        resolve_checked("http://idp.example.test/", allow_private=False, allow_http=False)
    with pytest.raises(OutboundRefused, match="does not resolve"):
        resolve_checked("https://nowhere.test/", allow_private=True, allow_http=False)
    allowed = resolve_checked("http://idp.internal.test/", allow_private=True, allow_http=True)
    assert allowed.address == "10.0.0.5"


@pytest.mark.usefixtures("production_rules", "loopback_only")
@pytest.mark.parametrize(
    ("option", "url"),
    [
        ("issuer", "https://idp.internal.test"),
        ("issuer", "https://127.0.0.1"),
        ("issuer", "https://localhost"),
        ("discovery_url", "https://metadata.test/.well-known/openid-configuration"),
        ("discovery_url", "https://169.254.169.254/latest/meta-data"),
        ("discovery_url", "https://mixed.test/.well-known/openid-configuration"),
        ("discovery_url", "https://[fd12:3456::1]/.well-known/openid-configuration"),
        ("issuer", "https://ula.test"),
        ("issuer", "https://nowhere.test"),  # does not resolve
    ],
)
def test_a_connection_naming_a_private_address_is_refused(
    client: FlaskClient, tenant: TenantHandle, dns: FakeDns, option: str, url: str
) -> None:
    response = _create(client, tenant, **{option: url})
    body = factories.assert_surface_error(response, 400, "management", "invalid_body")
    assert f"options.{option}" in body["message"]
    assert _listed(client, tenant) == []


@pytest.mark.usefixtures("production_rules", "loopback_only")
def test_a_public_provider_is_accepted_without_contacting_it_and_a_change_is_checked(
    client: FlaskClient, tenant: TenantHandle, dns: FakeDns
) -> None:
    made = _create(client, tenant, issuer="https://idp.example.test")
    assert made.status_code == 201, made.get_data(as_text=True)
    assert "idp.example.test" in dns.asked
    moved = client.patch(
        f"{CONNECTIONS}/{made.get_json()['id']}",
        json={"options": {"client_id": "rp", "issuer": "https://idp.internal.test"}},
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    body = factories.assert_surface_error(moved, 400, "management", "invalid_body")
    assert "options.issuer" in body["message"]
    got = client.get(
        f"{CONNECTIONS}/{made.get_json()['id']}",
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert got.get_json()["options"]["issuer"] == "https://idp.example.test"


def test_private_providers_are_allowed_when_the_setting_says_so(
    client: FlaskClient, tenant: TenantHandle, dns: FakeDns, app: Flask
) -> None:
    # Outside production the default allows them (a local provider, as in these tests).
    assert app.config["FEDERATION_ALLOW_PRIVATE_TARGETS"] is True
    assert _create(client, tenant, issuer="https://idp.internal.test").status_code == 201


@pytest.mark.usefixtures("production_rules", "loopback_only")
def test_a_provider_resolving_privately_at_sign_in_is_not_called(
    app: Flask, client: FlaskClient, web_app: AppHandle, dns: FakeDns
) -> None:
    """A connection stored while its name was public (or while the setting allowed it)
    whose name now answers a private address: the discovery request is never made, and
    the app is told temporarily_unavailable."""
    make_connection(
        app, web_app.tenant_id, client_id=web_app.client_id, issuer="https://idp.internal.test"
    )
    upstream.clear_caches()
    _, challenge = pkce_pair()
    query = authorize_query(web_app, challenge, connection="corp-idp")
    started = client.get("/authorize", query_string=query)
    assert started.status_code in (302, 303), started.get_data(as_text=True)
    answer = query_of(started.headers["Location"])
    assert started.headers["Location"].startswith(web_app.redirect_uri + "?")
    assert answer["error"] == "temporarily_unavailable" and answer["state"] == query["state"]
    assert "idp.internal.test" in dns.asked


@pytest.mark.usefixtures("production_rules", "loopback_only")
@pytest.mark.parametrize(
    "url", ["https://metadata.test/keys", "https://10.0.0.5/keys", "http://idp.example.test/k"]
)
def test_jwks_and_token_urls_from_the_discovery_document_are_checked(
    app: Flask, dns: FakeDns, url: str
) -> None:
    """The discovery document names the JWKS and token URLs: each is checked before it is
    called, so a document pointing at the metadata service gets nothing fetched."""
    provider = Provider(
        issuer="https://idp.example.test",
        authorization_endpoint="https://idp.example.test/auth",
        token_endpoint=url,
        jwks_uri=url,
        userinfo_endpoint=None,
        auth_methods=("client_secret_basic",),
        algorithms=("RS256",),
    )
    upstream.clear_caches()
    with app.app_context():
        with pytest.raises(FederationError) as jwks:
            upstream.signing_key(provider, "kid-1")
        with pytest.raises(FederationError) as token:
            upstream.exchange_code(
                provider=provider,
                client_id="rp",
                client_secret="secret",
                code="code",
                code_verifier="v" * 43,
                redirect_uri="https://gatehouse.test/login/callback",
            )
    for refused in (jwks.value, token.value):
        assert refused.error == "temporarily_unavailable"
        assert "address is not allowed" in refused.description


@pytest.fixture(scope="module")
def idp_server() -> Iterator[Idp]:
    with running_idp() as idp:
        yield idp


def test_the_token_call_is_checked_again_at_the_callback(
    app: Flask,
    client: FlaskClient,
    web_app: AppHandle,
    idp_server: Idp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Discovery passed when the sign-in started (a local provider, allowed then); by the
    time the provider sends the browser back the rules refuse its address: the code is not
    exchanged, the app gets temporarily_unavailable, and no user is created."""
    idp_server.reset()
    upstream.clear_caches()
    make_connection(app, web_app.tenant_id, client_id=web_app.client_id, issuer=idp_server.issuer)
    _, challenge = pkce_pair()
    query = authorize_query(web_app, challenge, connection="corp-idp")
    started = client.get("/authorize", query_string=query)
    assert started.headers["Location"].startswith(idp_server.issuer + "/auth?")
    back = upstream_sign_in(started.headers["Location"], "u-ssrf")
    monkeypatch.setitem(app.config, "FEDERATION_ALLOW_PRIVATE_TARGETS", False)
    callback = client.get(back.removeprefix("http://gatehouse.test"))
    assert callback.status_code in (302, 303), callback.get_data(as_text=True)[:400]
    answer = query_of(callback.headers["Location"])
    assert answer["error"] == "temporarily_unavailable" and answer["state"] == query["state"]
    assert factories.count_users(app, web_app.tenant_id) == 0
