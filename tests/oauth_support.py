"""Helpers for the OAuth and JWT tests: sign in over HTTP, read and verify token claims,
and build variant apps that share the test database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import jwt
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.core.db import db
from tests.conftest import make_config, redis_url

ISSUER = "http://gatehouse.test"
PASSWORD = "correct horse battery"
RATELIMITS = "gatehouse.ratelimits"
# Rate-limit counters of the variant apps live in their own Redis database: every test's
# clean_tables resets the shared one, so a suite running beside this one (same Redis)
# would otherwise wipe a counter between two requests. The broker stays the shared one.


def token_request(
    client: FlaskClient, tenant_id: str | None, *, as_json: bool = False, **fields: Any
) -> Any:
    """POST /oauth/token with `fields` as a form (or JSON) body and X-Tenant-ID."""
    headers = {"X-Tenant-ID": tenant_id} if tenant_id else {}
    if as_json:
        return client.post("/oauth/token", json=fields, headers=headers)
    return client.post("/oauth/token", data=fields, headers=headers)


def sign_in(client: FlaskClient, tenant_id: str, login: str, password: str = PASSWORD) -> dict:
    """A successful password grant by username; returns the token response."""
    response = token_request(
        client, tenant_id, grant_type="password", username=login, password=password
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def refresh(client: FlaskClient, refresh_token: str, tenant_id: str | None = None) -> Any:
    return token_request(client, tenant_id, grant_type="refresh_token", refresh_token=refresh_token)


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (for inspection only)."""
    return jwt.decode(token, options={"verify_signature": False})


def jwks_key(client: FlaskClient, token: str) -> Any:
    """The public key the served JWKS names for `token`'s kid."""
    document = client.get("/.well-known/jwks.json").get_json()
    return jwt.PyJWKSet.from_dict(document)[jwt.get_unverified_header(token)["kid"]].key


def verified(client: FlaskClient, token: str, audience: str) -> dict[str, Any]:
    """The claims of `token`, verified against the served JWKS, audience and issuer."""
    return jwt.decode(
        token, jwks_key(client, token), algorithms=["RS256"], audience=audience, issuer=ISSUER
    )


def assert_oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    """Assert an RFC 6749 §5.2 error body `{error, error_description}` with `status`."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error, body
    assert isinstance(body["error_description"], str) and body["error_description"]
    return body


def assert_invalid_token(response: Any) -> None:
    """A refused bearer token: 401 with `WWW-Authenticate: Bearer error="invalid_token"`."""
    assert response.status_code == 401, response.get_data(as_text=True)
    assert 'error="invalid_token"' in response.headers.get("WWW-Authenticate", "")


def audit_events(client: FlaskClient, headers: dict[str, str], action: str) -> list[dict]:
    response = client.get("/audit-events", query_string={"action": action}, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["items"]


@contextmanager
def variant_app(session_app: Flask, database_url: str, tmp: Path, **env: str) -> Iterator[Flask]:
    """Another app on the test database (whose migrations are applied), with `env` on top.

    It shares the session app's encryption keys, as every process of one deployment does:
    the signing keys in the database are encrypted with them. Its rate-limit counters
    live in the shared Redis, so they are cleared before and after.
    """
    keys = ",".join(session_app.config["ENCRYPTION_KEYS"])
    variant = create_app(make_config(database_url, tmp, ENCRYPTION_KEYS=keys, **env))
    variant.extensions[RATELIMITS].reset()
    try:
        yield variant
    finally:
        variant.extensions[RATELIMITS].reset()
        with variant.app_context():
            db.engine.dispose()


def rate_limited_app(
    session_app: Flask, database_url: str, tmp: Path, **limits: str
) -> AbstractContextManager[Flask]:
    """A variant app with the given RATELIMIT_* settings and counters of its own."""
    return variant_app(
        session_app,
        database_url,
        tmp,
        REDIS_URL=redis_url().rpartition("/")[0] + "/13",  # counters of its own
        CELERY_BROKER_URL=redis_url(),
        **limits,
    )
