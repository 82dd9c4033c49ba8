"""Helpers for the OAuth and JWT tests: sign in over HTTP, read and verify token claims,
and build variant apps that share the test database."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.core.db import db
from tests import factories
from tests.conftest import make_config, redis_url
from tests.factories import PASSWORD, AppHandle, bearer
from tests.factories import sign_in as sign_in  # re-exported for the sign-in tests

ISSUER = "http://gatehouse.test"
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


def app_password_grant(
    client: FlaskClient, client_id: str, client_secret: str, login: str = "alice"
) -> Any:
    """A password sign-in naming a confidential application, which must prove its client
    secret (the grant a secret's rotation is checked with)."""
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": login,
            "password": PASSWORD,
            "client_id": client_id,
            "client_secret": client_secret,
        },
    )


def refresh(client: FlaskClient, refresh_token: str, tenant_id: str | None = None) -> Any:
    return token_request(client, tenant_id, grant_type="refresh_token", refresh_token=refresh_token)


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


def make_alice(app: Flask, tenant_id: str, **fields: Any) -> str:
    """The user the sign-in tests sign in as: alice, alice@example.com (verified), with
    PASSWORD; `fields` on top. Her id."""
    return factories.make_user(
        app,
        tenant_id,
        **{
            "user_id": "alice-1",
            "username": "alice",
            "email": "alice@example.com",
            "email_verified": True,
            "password": PASSWORD,
            **fields,
        },
    )


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636 §4.2), computed here rather than
    by the code under test."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


class _FormInputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "input" and named.get("name"):
            self.fields[str(named["name"])] = named.get("value") or ""


def form_fields(html: str) -> dict[str, str]:
    """The named inputs of a page's form with their values (hidden ones included)."""
    parser = _FormInputs()
    parser.feed(html)
    return parser.fields


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect (each given once)."""
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def authorize_query(handle: AppHandle, challenge: str, **extra: str) -> dict[str, str]:
    """A valid authorization request of `handle` (code, S256), with `extra` on top."""
    query = {
        "response_type": "code",
        "client_id": handle.client_id,
        "redirect_uri": handle.redirect_uri,
        "scope": "openid profile email",
        "state": "state-" + secrets.token_hex(4),
        "nonce": "nonce-" + secrets.token_hex(4),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    query.update(extra)
    return {key: value for key, value in query.items() if value is not None}


def login_page(client: FlaskClient, handle: AppHandle, **extra: str) -> Any:
    """GET /authorize for `handle` with a fresh PKCE challenge (`extra` on top)."""
    _, challenge = pkce_pair()
    return client.get("/authorize", query_string=authorize_query(handle, challenge, **extra))


def submit_login(client: FlaskClient, page: Any, login: str, password: str = PASSWORD) -> Any:
    """Fill the login page's form and post it (no redirect followed)."""
    fields = form_fields(page.get_data(as_text=True))
    fields.update(username=login, password=password)
    return client.post("/authorize", data=fields)


def sign_in_through_page(
    client: FlaskClient, handle: AppHandle, login: str, password: str = PASSWORD, **extra: str
) -> tuple[dict[str, str], str, dict[str, str]]:
    """Open the login page for `handle`, sign in, and follow nothing: the query of the
    redirect to the app, the PKCE verifier, and the request sent."""
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge, **extra)
    page = client.get("/authorize", query_string=query)
    assert page.status_code == 200, page.get_data(as_text=True)
    answer = submit_login(client, page, login, password)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    location = answer.headers["Location"]
    assert location.startswith(query.get("redirect_uri", handle.redirect_uri) + "?"), location
    return query_of(location), verifier, query


def code_for(
    client: FlaskClient, handle: AppHandle, login: str = "alice", **extra: str
) -> tuple[str, str]:
    """A fresh authorization code of `handle` for `login` (through the page) and its PKCE
    verifier."""
    answer, verifier, _ = sign_in_through_page(client, handle, login, **extra)
    return answer["code"], verifier


def exchange(
    client: FlaskClient, handle: AppHandle, code: str, verifier: str | None, **extra: str
) -> Any:
    """POST the authorization_code grant for `handle` (public: client_id in the body)."""
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": handle.redirect_uri,
        "client_id": handle.client_id,
        "code_verifier": verifier,
        **extra,
    }
    return client.post("/oauth/token", data={k: v for k, v in body.items() if v is not None})


@contextmanager
def issuer_served(session_app: Flask, database_url: str, tmp: Path) -> Iterator[str]:
    """A variant app whose ISSUER is the very address it is served at over HTTP, so that
    a client reading its discovery document reaches its endpoints; that address."""
    target: dict[str, Flask] = {}

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        return target["app"](environ, start_response)

    with factories.serve(dispatch) as base:  # type: ignore[arg-type]
        with variant_app(session_app, database_url, tmp, ISSUER=base) as served:
            target["app"] = served
            yield base


def confirmed_totp(client: FlaskClient, access_token: str) -> str:
    """Enrol the token's user in TOTP over the me surface (start, confirm with the current
    code); the secret. Sign-in codes must then come from a later time-step: next_totp."""
    started = client.post("/users/me/mfa/totp", headers=bearer(access_token))
    assert started.status_code == 201, started.get_data(as_text=True)
    secret = started.get_json()["secret"]
    confirmed = client.post(
        "/users/me/mfa/totp/confirm",
        json={"code": factories.totp_code(secret)},
        headers=bearer(access_token),
    )
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    return secret


def next_totp(secret: str) -> str:
    """The code of the next time-step: accepted (one step of drift) and later than any
    code accepted in the current one."""
    import time

    return factories.totp_code(secret, time.time() + 30)


def count_verifications(monkeypatch: Any) -> list[str]:
    """Count argon2 verifications by `security._hasher` from now on (the real function
    still runs): the list of hashes verified. PasswordHasher has __slots__, so the method
    is wrapped on its class."""
    from app.core import security

    calls: list[str] = []
    real = type(security._hasher).verify

    def counting(hasher: Any, password_hash: str, password: str) -> bool:
        if hasher is security._hasher:
            calls.append(password_hash)
        return real(hasher, password_hash, password)

    monkeypatch.setattr(type(security._hasher), "verify", counting)
    return calls
