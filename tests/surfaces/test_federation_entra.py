"""Microsoft's multi-tenant endpoints (issue 27): the `common` and `organizations` discovery
documents name the issuer as a template, `https://login.microsoftonline.com/{tenantid}/v2.0`,
and each ID token's `iss` names the user's own Entra tenant, given again in its `tid`
claim. Gatehouse accepts the template from those two documents only, and then takes an ID
token only when its `iss` is the template filled with its own `tid`.

There is no internet here, so the tokens are checked at upstream.validate_id_token's level:
signed with a key made for the test, whose JWKS a loopback server publishes (the real key
lookup and the real checks run; nothing of Gatehouse's is replaced). A loopback discovery
document publishing a template shows that no other document may."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient

from app.connections.models import Connection
from app.core.db import db
from app.core.tenancy import tenant_scope
from app.federation import upstream
from app.federation.upstream import FederationError, Provider
from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.federation_support import CLIENT_ID, make_connection
from tests.oauth_support import authorize_query, pkce_pair, query_of

TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
COMMON = "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
ORGANIZATIONS = (
    "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration"
)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
NONCE = "n-0S6_WzA2Mj"


class Upstream:
    """A loopback server publishing one JWKS and one discovery document."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "entra-1", "use": "sig", "alg": "RS256"}]}
        self.document: dict[str, Any] = {}
        self.base = ""

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"aud": CLIENT_ID, "sub": "AAAA-pairwise", "iat": now, "exp": now + 600}
        body.update(nonce=NONCE, **claims)
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": "entra-1"})

    def provider(self, issuer: str = TEMPLATE) -> Provider:
        return Provider(
            issuer=issuer,
            authorization_endpoint=f"{self.base}/authorize",
            token_endpoint=f"{self.base}/token",
            jwks_uri=f"{self.base}/keys",
            userinfo_endpoint=None,
            auth_methods=("client_secret_post",),
            algorithms=("RS256",),
        )


@pytest.fixture(scope="module")
def entra() -> Iterator[Upstream]:
    state = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = state.jwks if self.path == "/keys" else state.document
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def checks(app: Flask, entra: Upstream) -> Iterator[Upstream]:
    upstream.clear_caches()
    with app.app_context():
        yield entra
    upstream.clear_caches()


def _validate(entra: Upstream, token: str, issuer: str = TEMPLATE) -> dict[str, Any]:
    return upstream.validate_id_token(
        provider=entra.provider(issuer), token=token, client_id=CLIENT_ID, nonce=NONCE
    )


def test_a_token_whose_iss_names_its_own_tenant_is_accepted(checks: Upstream) -> None:
    issuer = f"https://login.microsoftonline.com/{TENANT}/v2.0"
    claims = _validate(checks, checks.token(iss=issuer, tid=TENANT))
    assert (claims["iss"], claims["tid"], claims["sub"]) == (issuer, TENANT, "AAAA-pairwise")
    # A personal account through `common`: the consumers tenant, the same rule.
    personal = f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"
    assert _validate(checks, checks.token(iss=personal, tid=OTHER_TENANT))["tid"] == OTHER_TENANT


@pytest.mark.parametrize(
    ("iss", "tid"),
    [
        # No tid: nothing to fill the template with.
        (f"https://login.microsoftonline.com/{TENANT}/v2.0", None),
        # iss and tid name two tenants (a token of one tenant passed off as another's).
        (f"https://login.microsoftonline.com/{TENANT}/v2.0", OTHER_TENANT),
        # The template itself, or another host, is no issuer.
        (TEMPLATE, TENANT),
        (f"https://evil.example/{TENANT}/v2.0", TENANT),
        # A tid that is no GUID cannot put a path or a host into the issuer.
        ("https://login.microsoftonline.com/x/../common/v2.0", "x/../common"),
        ("https://login.microsoftonline.com/common/v2.0", "common"),
        # The v1 issuer of the same tenant.
        (f"https://sts.windows.net/{TENANT}/", TENANT),
    ],
)
def test_a_token_whose_iss_is_not_its_tenants_is_refused(
    checks: Upstream, iss: str, tid: str | None
) -> None:
    with pytest.raises(FederationError) as refused:
        _validate(checks, checks.token(iss=iss, tid=tid))
    assert refused.value.error == "access_denied"
    assert "another provider" in refused.value.description


def test_a_fixed_issuer_is_still_compared_exactly(checks: Upstream) -> None:
    issuer = f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert _validate(checks, checks.token(iss=issuer, tid=TENANT), issuer)["iss"] == issuer
    other = f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"
    with pytest.raises(FederationError, match="another provider"):
        # A provider with a fixed issuer: a tid naming another tenant does not help.
        _validate(checks, checks.token(iss=other, tid=OTHER_TENANT), issuer)


def test_the_template_is_accepted_only_from_microsofts_multi_tenant_documents() -> None:
    assert upstream.issuer_template(COMMON, TEMPLATE)
    assert upstream.issuer_template(ORGANIZATIONS, TEMPLATE)
    consumers = COMMON.replace("/common/", "/consumers/")
    assert not upstream.issuer_template(consumers, TEMPLATE)
    assert not upstream.issuer_template(COMMON, "https://evil.example/{tenantid}/v2.0")
    assert not upstream.issuer_template(
        "https://idp.example/.well-known/openid-configuration", TEMPLATE
    )


def test_the_authorization_responses_iss_may_name_any_tenant_of_the_template() -> None:
    """RFC 9207's `iss` comes without a `tid`: any tenant's issuer, nothing else."""
    assert upstream.issuer_matches(TEMPLATE, f"https://login.microsoftonline.com/{TENANT}/v2.0")
    for other in (
        TEMPLATE,
        "https://login.microsoftonline.com/common/v2.0",
        f"https://login.microsoftonline.com/{TENANT}/v2.0/x",
        f"https://login.microsoftonline.com/a/{TENANT}/v2.0",
        f"https://other.example/{TENANT}/v2.0",
    ):
        assert not upstream.issuer_matches(TEMPLATE, other), other
    assert upstream.issuer_matches("https://idp.example", "https://idp.example")
    assert not upstream.issuer_matches("https://idp.example", "https://idp.example.evil")


def test_another_document_publishing_a_template_is_unavailable(
    app: Flask, client: FlaskClient, tenant: TenantHandle, entra: Upstream
) -> None:
    """A provider that is not Microsoft's multi-tenant endpoint cannot switch the issuer
    check to a template: the sign-in is refused before the browser is sent anywhere."""
    upstream.clear_caches()
    handle: AppHandle = factories.make_application(
        app, tenant.id, redirect_uris=["https://app.test/cb"]
    )
    entra.document = {
        "issuer": "http://127.0.0.1/{tenantid}/v2.0",
        "authorization_endpoint": f"{entra.base}/authorize",
        "token_endpoint": f"{entra.base}/token",
        "jwks_uri": f"{entra.base}/keys",
    }
    connection_id = make_connection(
        app,
        tenant.id,
        client_id=handle.client_id,
        name="entra",
        strategy="windowslive",
        discovery_url=f"{entra.base}/.well-known/openid-configuration",
    )
    _, challenge = pkce_pair()
    started = client.get(
        "/authorize", query_string=authorize_query(handle, challenge, connection="entra")
    )
    assert started.status_code in (302, 303)
    answer = query_of(started.headers["Location"])
    assert started.headers["Location"].startswith("https://app.test/cb?")
    assert answer["error"] == "temporarily_unavailable"
    assert "another issuer" in answer["error_description"]
    with app.app_context(), tenant_scope(tenant.id):
        assert db.session.get(Connection, connection_id) is not None
    upstream.clear_caches()
