"""Signed tokens over HTTP: JWKS and discovery, key rotation, and the forgeries and
revocations a bearer check must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from authlib.oidc.discovery import OpenIDProviderMetadata
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from jwt.algorithms import RSAAlgorithm
from werkzeug.serving import make_server

from app.core.db import db
from app.core.security import sha256_hex
from app.core.tenancy import tenant_scope
from app.tokens import signing
from app.tokens.models import SigningKey
from app.users import service as user_service
from tests import factories
from tests.factories import TenantHandle
from tests.oauth_support import (
    ISSUER,
    PASSWORD,
    assert_invalid_token,
    bearer,
    claims,
    jwks_key,
    refresh,
    sign_in,
    variant_app,
)


def _user(app: Flask, tenant: TenantHandle, user_id: str = "dave-1", name: str = "dave") -> str:
    return factories.make_user(
        app,
        tenant.id,
        user_id=user_id,
        username=name,
        email=f"{name}@example.com",
        password=PASSWORD,
    )


def _profile(client: FlaskClient, token: str, **headers: str) -> Any:
    return client.get("/user/profile", headers=bearer(token, **headers))


@pytest.fixture()
def live_server(app: Flask) -> Iterator[str]:
    """The session app served over real HTTP on a free port."""
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def test_jwks_publishes_public_rsa_keys_only(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    _user(app, tenant)
    token = sign_in(client, tenant.id, "dave")["access_token"]
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.get_json()["keys"]
    assert keys
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid in {k["kid"] for k in keys}
    for key in keys:
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
        assert key["n"] and key["e"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()


def test_an_access_token_verifies_with_pyjwkclient_over_http(
    app: Flask, client: FlaskClient, tenant: TenantHandle, live_server: str
) -> None:
    user_id = _user(app, tenant)
    token = sign_in(client, tenant.id, "dave")["access_token"]
    jwks_client = jwt.PyJWKClient(f"{live_server}/.well-known/jwks.json", cache_keys=False)
    key = jwks_client.get_signing_key_from_jwt(token).key
    verified = jwt.decode(token, key, algorithms=["RS256"], audience=tenant.id, issuer=ISSUER)
    assert verified["sub"] == user_id and verified["tid"] == tenant.id
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, key, algorithms=["RS256"], audience="another-tenant", issuer=ISSUER)


def test_openid_configuration_describes_the_issuer(client: FlaskClient) -> None:
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    document = response.get_json()
    assert document["issuer"] == ISSUER
    assert document["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert document["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert document["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
    assert {"password", "refresh_token", "client_credentials"} <= set(
        document["grant_types_supported"]
    )
    assert document["response_types_supported"]
    assert document["subject_types_supported"] == ["public"]
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        document["token_endpoint_auth_methods_supported"]
    )
    assert "openid" in document["scopes_supported"]


def test_openid_configuration_passes_a_standard_validator(
    app: Flask, database_url: str, tmp_path: Path
) -> None:
    with variant_app(app, database_url, tmp_path, ISSUER="https://gatehouse.test") as secure:
        document = secure.test_client().get("/.well-known/openid-configuration").get_json()
    assert document["issuer"] == "https://gatehouse.test"
    OpenIDProviderMetadata(document).validate()
    with pytest.raises(ValueError, match="jwks_uri"):
        OpenIDProviderMetadata({**document, "jwks_uri": None}).validate()


def test_rotation_keeps_old_tokens_valid_and_publishes_both_keys(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    _user(app, tenant)
    before = sign_in(client, tenant.id, "dave")["access_token"]
    result = app.test_cli_runner().invoke(args=["keys", "rotate-signing"])
    assert result.exit_code == 0, result.output
    after = sign_in(client, tenant.id, "dave")["access_token"]

    old_kid = jwt.get_unverified_header(before)["kid"]
    new_kid = jwt.get_unverified_header(after)["kid"]
    assert old_kid != new_kid
    assert new_kid in result.output
    published = {k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]}
    assert {old_kid, new_kid} <= published
    for token in (before, after):
        assert _profile(client, token).status_code == 200
        assert (
            jwt.decode(token, jwks_key(client, token), algorithms=["RS256"], audience=tenant.id)[
                "sub"
            ]
            == "dave-1"
        )


def test_a_rotated_key_verifies_the_tokens_other_processes_still_sign_with_it(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    _user(app, tenant)
    old_kid = jwt.get_unverified_header(sign_in(client, tenant.id, "dave")["access_token"])["kid"]
    rotated_at = time.time()
    result = app.test_cli_runner().invoke(args=["keys", "rotate-signing"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        old = db.session.get(SigningKey, old_kid)
        # Another API process may sign a day-long token with it for one more cache period.
        last_signature = rotated_at + signing.CURRENT_KEY_CACHE_SECONDS
        assert old.expires_at.timestamp() >= last_signature + signing.max_token_lifetime()


def test_the_verified_token_cache_keeps_the_recently_used_tokens_within_its_bound(
    app: Flask, client: FlaskClient, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user(app, tenant)
    monkeypatch.setattr(signing, "VERIFIED_CACHE_SIZE", 3)
    tokens = [sign_in(client, tenant.id, "dave")["access_token"] for _ in range(5)]
    for token in tokens:  # the first token stays in use all along
        for used in (tokens[0], token):
            assert _profile(client, used).status_code == 200
    cache = app.extensions["gatehouse.signing"].verified
    assert list(cache) == [sha256_hex(t) for t in (tokens[3], tokens[0], tokens[4])]
    for token in tokens:  # an evicted token is verified again, not refused
        assert _profile(client, token).status_code == 200
    assert len(cache) == 3


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _hs256_with(secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """HS256 by hand: PyJWT rightly refuses a PEM key as an HMAC secret."""
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _published_jwk(client: FlaskClient, kid: str) -> dict[str, Any]:
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    return next(k for k in keys if k["kid"] == kid)


def _fresh_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture()
def genuine(app: Flask, client: FlaskClient, tenant: TenantHandle) -> dict[str, Any]:
    """A working access token of dave, its claims and kid."""
    _user(app, tenant)
    token = sign_in(client, tenant.id, "dave")["access_token"]
    assert _profile(client, token).status_code == 200
    return {"token": token, "claims": claims(token), "kid": jwt.get_unverified_header(token)["kid"]}


def test_alg_none_is_refused(client: FlaskClient, genuine: dict[str, Any]) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": genuine["kid"]}).encode())
    payload = _b64(json.dumps(genuine["claims"]).encode())
    assert_invalid_token(_profile(client, f"{header}.{payload}."))
    unsigned = jwt.encode(
        genuine["claims"], None, algorithm="none", headers={"kid": genuine["kid"]}
    )
    assert_invalid_token(_profile(client, unsigned))


def test_hs256_signed_with_the_public_key_is_refused(
    client: FlaskClient, genuine: dict[str, Any]
) -> None:
    public = RSAAlgorithm.from_jwk(_published_jwk(client, genuine["kid"]))
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (pem, pem.strip()):
        forged = _hs256_with(
            secret, {"alg": "HS256", "typ": "JWT", "kid": genuine["kid"]}, genuine["claims"]
        )
        assert_invalid_token(_profile(client, forged))


def test_a_foreign_key_with_our_kid_or_an_unknown_kid_is_refused(
    client: FlaskClient, genuine: dict[str, Any]
) -> None:
    stranger = _fresh_rsa()
    for kid in (genuine["kid"], "no-such-kid"):
        forged = jwt.encode(genuine["claims"], stranger, algorithm="RS256", headers={"kid": kid})
        assert_invalid_token(_profile(client, forged))
    no_kid = jwt.encode(genuine["claims"], stranger, algorithm="RS256")
    assert_invalid_token(_profile(client, no_kid))


def test_an_id_token_is_no_access_token(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    _user(app, tenant)
    id_token = sign_in(client, tenant.id, "dave")["id_token"]
    assert claims(id_token)["sub"] == "dave-1"
    for path in ("/user/profile", "/users/current", "/user/dave-1"):
        assert client.get(path, headers=bearer(id_token)).status_code in (401, 403)


def test_a_tampered_payload_is_refused(
    app: Flask, client: FlaskClient, tenant: TenantHandle, genuine: dict[str, Any]
) -> None:
    _user(app, tenant, "erin-1", "erin")
    header, _, signature = genuine["token"].split(".")
    for changes in ({"sub": "erin-1"}, {"scope": genuine["claims"]["scope"] + " read:users"}):
        payload = _b64(json.dumps({**genuine["claims"], **changes}).encode())
        assert_invalid_token(_profile(client, f"{header}.{payload}.{signature}"))
    assert _profile(client, genuine["token"]).status_code == 200


def test_an_expired_token_minted_by_the_real_helper_is_refused(
    app: Flask, client: FlaskClient, tenant: TenantHandle, genuine: dict[str, Any]
) -> None:
    now = int(time.time())
    base = {**genuine["claims"], "jti": uuid.uuid4().hex}
    with app.app_context():
        expired = signing.sign({**base, "iat": now - 120, "exp": now - 60})
        fresh = signing.sign({**base, "jti": uuid.uuid4().hex, "iat": now, "exp": now + 60})
    response = _profile(client, expired)
    assert_invalid_token(response)
    assert _profile(client, fresh).status_code == 200
    assert_invalid_token(_profile(client, "not.a.jwt"))


def test_a_password_change_revokes_older_tokens_but_not_newer_ones(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    _user(app, tenant)
    other_session = sign_in(client, tenant.id, "dave")
    changer = sign_in(client, tenant.id, "dave")
    new_password = "an entirely new passphrase"

    changed = client.put(
        "/users/me", json={"password": new_password}, headers=bearer(changer["access_token"])
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    after = sign_in(client, tenant.id, "dave", new_password)

    assert_invalid_token(_profile(client, other_session["access_token"]))
    assert _profile(client, after["access_token"]).status_code == 200
    # Other sessions' refresh families are revoked; the changing session's family is kept.
    assert refresh(client, other_session["refresh_token"], tenant.id).status_code == 401
    assert refresh(client, changer["refresh_token"], tenant.id).status_code == 200
    old = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "dave", "password": PASSWORD},
        headers={"X-Tenant-ID": tenant.id},
    )
    assert old.status_code == 401


def test_a_token_stops_working_when_its_user_is_blocked(
    app: Flask, client: FlaskClient, tenant: TenantHandle, genuine: dict[str, Any]
) -> None:
    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user("dave-1")
        user_service.update_user(user=user, changes={"blocked": True}, actor="test")
        db.session.commit()
    assert_invalid_token(_profile(client, genuine["token"]))


def test_a_token_stops_working_when_its_user_is_deleted(
    client: FlaskClient, tenant: TenantHandle, genuine: dict[str, Any]
) -> None:
    assert client.delete("/users/dave-1", headers=tenant.headers).status_code == 204
    assert_invalid_token(_profile(client, genuine["token"]))


def test_a_token_of_one_tenant_with_another_tenant_header_is_forbidden(
    client: FlaskClient,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    genuine: dict[str, Any],
) -> None:
    assert _profile(client, genuine["token"], **{"X-Tenant-ID": other_tenant.id}).status_code == 403
    assert (
        _profile(client, genuine["token"], **{"x-m2-organization-id": other_tenant.id}).status_code
        == 403
    )
    assert _profile(client, genuine["token"], **{"X-Tenant-ID": tenant.id}).status_code == 200
