"""Revocation is exact and immediate: after a password change, reset, revoke, reuse, block,
role or policy change returns, no token minted before it works on the next request, and
no refresh that ran concurrently leaves a live session behind (real threads, PostgreSQL).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.users import service as user_service
from tests import factories
from tests.factories import TenantHandle
from tests.oauth_support import PASSWORD, bearer, claims, refresh, sign_in

ROUNDS = 4
THIEVES = 5


def _profile(client: FlaskClient, access_token: str) -> Any:
    return client.get("/user/profile", headers=bearer(access_token))


def _dead(client: FlaskClient, tenant_id: str, tokens: dict[str, str]) -> bool:
    """Whether neither the access token nor the refresh token of a session works."""
    access = _profile(client, tokens["access_token"]).status_code
    rotated = refresh(client, tokens["refresh_token"], tenant_id).status_code
    return access == 401 and rotated == 401


class Thief(threading.Thread):
    """Refreshes one stolen session as fast as it can, keeping every token it got."""

    def __init__(self, app: Flask, tenant_id: str, session: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.client = app.test_client()
        self.tenant_id = tenant_id
        self.minted = [session]
        self.stop = threading.Event()
        self.refreshes = 0

    def run(self) -> None:
        while not self.stop.is_set():
            answer = refresh(self.client, self.minted[-1]["refresh_token"], self.tenant_id)
            if answer.status_code != 200:
                return
            self.refreshes += 1
            self.minted.append(answer.get_json())


def _race(app: Flask, tenant: TenantHandle, revoke: Any) -> tuple[int, int]:
    """Run ROUNDS rounds of THIEVES refreshing sessions while `revoke(round)` runs; return
    (sessions still alive after the revocation returned, refreshes that raced it)."""
    checker = app.test_client()
    survivors = raced = 0
    for round_no in range(ROUNDS):
        app.extensions["gatehouse.ratelimits"].reset()  # 5 sign-ins a round, 4 rounds
        sessions = [sign_in(checker, tenant.id, "victim", PASSWORD) for _ in range(THIEVES)]
        thieves = [Thief(app, tenant.id, s) for s in sessions]
        for thief in thieves:
            thief.start()
        deadline = time.monotonic() + 5
        while sum(t.refreshes for t in thieves) < THIEVES and time.monotonic() < deadline:
            time.sleep(0.01)  # let the refreshes get going before revoking
        revoke(round_no)
        for thief in thieves:
            thief.stop.set()
        for thief in thieves:
            thief.join(10)
        raced += sum(t.refreshes for t in thieves)
        for thief in thieves:
            survivors += sum(not _dead(checker, tenant.id, s) for s in thief.minted[-3:])
    return survivors, raced


def test_no_refresh_in_flight_survives_a_password_change(app: Flask, tenant: TenantHandle) -> None:
    factories.make_user(app, tenant.id, user_id="victim-1", username="victim", password=PASSWORD)
    api = app.test_client()

    def change_password(round_no: int) -> None:
        # The owner (say, after noticing the theft) changes the password with an API key.
        answer = api.put(
            "/api/v1/users/victim/password",
            json={"new_password": PASSWORD},
            headers={"Authorization": f"Bearer {tenant.key}"},
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)

    survivors, raced = _race(app, tenant, change_password)
    assert raced > 0
    assert survivors == 0


def test_no_refresh_in_flight_survives_a_revoke(app: Flask, tenant: TenantHandle) -> None:
    factories.make_user(app, tenant.id, user_id="victim-1", username="victim", password=PASSWORD)
    api = app.test_client()
    checker = app.test_client()
    survivors = 0
    for _ in range(ROUNDS):
        session = sign_in(checker, tenant.id, "victim", PASSWORD)
        thief = Thief(app, tenant.id, session)
        thief.start()
        while thief.refreshes < 2 and thief.is_alive():
            time.sleep(0.005)
        # Revoke with the first refresh token of the family (long rotated by now).
        assert (
            api.post("/oauth/revoke", data={"token": session["refresh_token"]}).status_code == 200
        )
        thief.stop.set()
        thief.join(10)
        survivors += sum(not _dead(checker, tenant.id, s) for s in thief.minted[-3:])
    assert survivors == 0


def test_a_sign_in_in_flight_does_not_survive_a_reset(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    """A session created under the generation before a reset is dead, even when its INSERT
    was invisible to the reset (the generation, not an UPDATE of rows, decides)."""
    user_id = factories.make_user(
        app, tenant.id, user_id="victim-1", username="victim", password=PASSWORD
    )
    early = sign_in(client, tenant.id, "victim", PASSWORD)
    with app.app_context(), tenant_scope(tenant.id):
        from app.tokens import service as token_service

        user = user_service.get_user(user_id)
        token_service.revoke_user_sessions(user=user)
        db.session.commit()
    assert _dead(client, tenant.id, early)
    fresh = sign_in(client, tenant.id, "victim", PASSWORD)
    assert _profile(client, fresh["access_token"]).status_code == 200


def test_revoke_and_reuse_end_the_access_tokens_of_the_family(
    app: Flask, client: FlaskClient, tenant: TenantHandle, database_url: str, tmp_path: Any
) -> None:
    factories.make_user(app, tenant.id, user_id="carol-1", username="carol", password=PASSWORD)
    revoked = sign_in(client, tenant.id, "carol")
    untouched = sign_in(client, tenant.id, "carol")
    assert _profile(client, revoked["access_token"]).status_code == 200
    assert client.post("/oauth/revoke", data={"token": revoked["refresh_token"]}).status_code == 200
    assert _profile(client, revoked["access_token"]).status_code == 401
    assert _profile(client, untouched["access_token"]).status_code == 200

    from tests.oauth_support import variant_app

    with variant_app(app, database_url, tmp_path, REFRESH_REUSE_GRACE_SECONDS="0") as strict:
        strict_client = strict.test_client()
        session = sign_in(strict_client, tenant.id, "carol")
        rotated = refresh(strict_client, session["refresh_token"], tenant.id).get_json()
        assert _profile(strict_client, rotated["access_token"]).status_code == 200
        assert refresh(strict_client, session["refresh_token"], tenant.id).status_code == 401
        # The reuse ended the family: the access token the rotation issued is dead too.
        assert _profile(strict_client, rotated["access_token"]).status_code == 401


def test_a_demoted_admin_loses_admin_scopes_on_the_next_request(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(
        app,
        tenant.id,
        user_id="boss-1",
        username="boss",
        password=PASSWORD,
        permissions_group="admin",
    )
    factories.make_user(app, tenant.id, user_id="other-1", username="other")
    admin = sign_in(client, tenant.id, "boss")
    assert "read:users" in claims(admin["access_token"])["scope"].split()
    assert client.get("/user/other-1", headers=bearer(admin["access_token"])).status_code == 200

    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user("boss-1")
        user_service.update_user(user=user, changes={"permissions_group": None}, actor="test")
        db.session.commit()

    stale = client.get("/user/other-1", headers=bearer(admin["access_token"]))
    assert stale.status_code == 401, stale.get_data(as_text=True)
    assert stale.get_json()["error"] == "invalid_token"
    # The session lives on: a refresh mints a token with the new (smaller) scopes.
    renewed = refresh(client, admin["refresh_token"], tenant.id).get_json()
    assert "read:users" not in claims(renewed["access_token"])["scope"].split()
    assert client.get("/user/other-1", headers=bearer(renewed["access_token"])).status_code == 403
    assert _profile(client, renewed["access_token"]).status_code == 200


def test_a_policy_change_ends_older_access_tokens(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    admin_headers = {"Authorization": f"Bearer {tenant.key}"}
    created = client.post(
        "/api/v1/users/pat",
        json={
            "password": PASSWORD,
            "initial_policies": [{"resource": "orders", "resource_type": "table", "type": "admin"}],
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    session = sign_in(client, tenant.id, "pat")
    assert "admin:table:orders" in claims(session["access_token"])["scope"].split()

    replaced = client.put("/api/v1/users/pat/policies", json=[], headers=admin_headers)
    assert replaced.status_code == 200 and replaced.get_json() == []
    assert _profile(client, session["access_token"]).status_code == 401
    renewed = refresh(client, session["refresh_token"], tenant.id).get_json()
    assert "admin:table:orders" not in claims(renewed["access_token"])["scope"].split()
    assert _profile(client, renewed["access_token"]).status_code == 200


def test_block_ends_tokens_at_once_and_unblock_restores_them(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, user_id="bea-1", username="bea", password=PASSWORD)
    session = sign_in(client, tenant.id, "bea")

    def set_blocked(value: bool) -> None:
        with app.app_context(), tenant_scope(tenant.id):
            user_service.update_user(
                user=user_service.get_user("bea-1"), changes={"blocked": value}, actor="test"
            )
            db.session.commit()

    set_blocked(True)
    assert _profile(client, session["access_token"]).status_code == 401
    assert refresh(client, session["refresh_token"], tenant.id).status_code == 401
    set_blocked(False)
    # Blocking suspends; it does not revoke: the same session works again.
    assert _profile(client, session["access_token"]).status_code == 200
    assert refresh(client, session["refresh_token"], tenant.id).status_code == 200


def test_time_claims_are_integers_and_a_token_works_in_its_first_second(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, user_id="ivy-1", username="ivy", password=PASSWORD)
    session = sign_in(client, tenant.id, "ivy")
    for token in (session["access_token"], session["id_token"]):
        payload = claims(token)
        for name in ("iat", "exp", "auth_time"):
            assert type(payload[name]) is int, (name, payload[name])
    # A token minted right after a password change (same second) works.
    changed = client.put(
        "/users/me",
        json={"password": "another long passphrase"},
        headers=bearer(session["access_token"]),
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    after = sign_in(client, tenant.id, "ivy", "another long passphrase")
    assert _profile(client, after["access_token"]).status_code == 200
    assert _profile(client, session["access_token"]).status_code == 200  # the kept session


def test_a_standard_jose_library_accepts_a_fresh_token(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    """joserfc refuses a fractional `iat` as issued in the future; ours are whole seconds."""
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import KeySet

    factories.make_user(app, tenant.id, user_id="ivy-1", username="ivy", password=PASSWORD)
    token = sign_in(client, tenant.id, "ivy")["access_token"]
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json())
    decoded = jose_jwt.decode(token, keys, algorithms=["RS256"])
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": "http://gatehouse.test"},
        aud={"essential": True, "value": tenant.id},
    )
    registry.validate(decoded.claims)  # raises on an iat "in the future"
    assert decoded.claims["sub"] == "ivy-1"
