"""What an attacker tried (issue 14): rate-limit keys that a second identifier dodged, a
duplicate email that locked its owner out, made-up `kid`s, concurrent policy writes,
trailing newlines, stolen tokens changing passwords, narrow keys minting sessions, and
files others could read."""

from __future__ import annotations

import json
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app import create_app
from app.core import security
from app.core.db import db
from app.core.tenancy import tenant_scope
from app.tokens import signing
from tests import factories
from tests.conftest import make_config
from tests.factories import TenantHandle
from tests.oauth_support import (
    PASSWORD,
    assert_oauth_error,
    bearer,
    count_verifications,
    rate_limited_app,
    refresh,
    sign_in,
    token_request,
    variant_app,
)

RESET_HOST = "app.example.com"


# --- sign-in and reset limits count every identifier sent ------------------------------


def test_a_fresh_username_beside_the_real_email_still_hits_the_account_limit(
    app: Flask, tenant: TenantHandle, database_url: str, tmp_path: Path
) -> None:
    factories.make_user(app, tenant.id, user_id="vic-1", email="vic@example.com", password=PASSWORD)
    with rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_SIGNIN_PER_ACCOUNT="3 per minute"
    ) as limited:
        client = limited.test_client()
        statuses = [
            token_request(
                client,
                tenant.id,
                grant_type="password",
                username=f"nobody-{i}",
                email="vic@example.com",
                password="guess",
            ).status_code
            for i in range(6)
        ]
        assert statuses == [401, 401, 401, 429, 429, 429]
        # The address itself is now limited, however it is sent.
        alone = token_request(
            client, tenant.id, grant_type="password", username="VIC@example.com", password=PASSWORD
        )
        assert alone.status_code == 429


@pytest.mark.parametrize("varied", ["username", "email"])
def test_reset_requests_are_limited_on_every_identifier(
    app: Flask, database_url: str, tmp_path: Path, varied: str
) -> None:
    tenant = factories.make_tenant(
        app,
        "mailco",
        email_from="noreply@example.com",
        postmark_server_token="pm",
        password_reset_hosts=[RESET_HOST],
    )
    factories.make_user(app, tenant.id, user_id="vic-1", username="vic", email="vic@example.com")
    with rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_RESET_PER_ADDRESS="2 per hour"
    ) as limited:
        client = limited.test_client()
        statuses = []
        for i in range(4):
            body = {"username": "vic", "email": "vic@example.com", "host": RESET_HOST}
            body[varied] = f"random-{i}@example.com" if varied == "email" else f"random-{i}"
            answer = client.post(
                "/auth/password-reset", json=body, headers={"X-Tenant-ID": tenant.id}
            )
            statuses.append(answer.status_code)
        assert statuses == [200, 200, 429, 429]


# --- a duplicate address cannot lock its owner out ---------------------------------------


def test_an_unverified_duplicate_email_does_not_lock_the_owner_out(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(
        app, tenant.id, user_id="owner-1", email="me@example.com", password=PASSWORD
    )
    factories.make_user(
        app, tenant.id, user_id="mallory-1", username="mallory", password="mallory's own pass"
    )
    thief = sign_in(client, tenant.id, "mallory", "mallory's own pass")
    # Mallory puts the owner's address on her own account (she may: it becomes unverified).
    claimed = client.patch(
        "/users/mallory-1", json={"email": "me@example.com"}, headers=bearer(thief["access_token"])
    )
    assert claimed.status_code == 200, claimed.get_data(as_text=True)

    owner = token_request(
        client, tenant.id, grant_type="password", username="me@example.com", password=PASSWORD
    )
    assert owner.status_code == 200, owner.get_data(as_text=True)
    assert (
        jwt.decode(owner.get_json()["access_token"], options={"verify_signature": False})["sub"]
        == "owner-1"
    )
    # Guessing the owner's password through the shared address still fails as usual.
    wrong = token_request(
        client, tenant.id, grant_type="password", email="me@example.com", password="guess"
    )
    assert_oauth_error(wrong, 401, "invalid_grant")


def test_a_verified_address_wins_over_unverified_holders(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(
        app,
        tenant.id,
        user_id="real-1",
        email="me@example.com",
        email_verified=True,
        password=PASSWORD,
    )
    factories.make_user(
        app, tenant.id, user_id="copy-1", email="me@example.com", password="the copier's pass"
    )
    copier = token_request(
        client,
        tenant.id,
        grant_type="password",
        email="me@example.com",
        password="the copier's pass",
    )
    assert_oauth_error(copier, 401, "invalid_grant")
    real = token_request(
        client, tenant.id, grant_type="password", email="me@example.com", password=PASSWORD
    )
    assert real.status_code == 200


def _holders(app: Flask, tenant: TenantHandle, count: int, password_of: Any) -> list[str]:
    """`count` unverified password users holding me@example.com, oldest first; their ids."""
    return [
        factories.make_user(
            app, tenant.id, user_id=f"holder-{i}", email="me@example.com", password=password_of(i)
        )
        for i in range(count)
    ]


def _tag(app: Flask, tenant_id: str, user_id: str, password: str) -> int:
    return security.password_tag(app.config["SECRET_KEY"], tenant_id, user_id, password)


def _password_matching_no_tag(app: Flask, tenant_id: str, user_ids: list[str], tags: set) -> str:
    """A password whose tag, for every user in `user_ids`, is none of the stored `tags`
    (the test knows SECRET_KEY, so it need not rely on the 255-in-256 chance)."""
    for n in range(10_000):
        guess = f"guess-{n}"
        if all(_tag(app, tenant_id, uid, guess) not in tags for uid in user_ids):
            return guess
    raise AssertionError("no such password")


def _sub(response: Any) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    return jwt.decode(response.get_json()["access_token"], options={"verify_signature": False})[
        "sub"
    ]


def test_older_holders_of_an_address_never_lock_a_later_one_out(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    """Issue 22: five older unverified holders of an address kept a sixth from signing in
    by email (only the oldest five were tried)."""
    _holders(app, tenant, 6, lambda i: f"holder {i}'s own pass")
    factories.make_user(app, tenant.id, user_id="late-1", email="ME@example.com", password=PASSWORD)

    by_email = token_request(
        client, tenant.id, grant_type="password", email="me@example.com", password=PASSWORD
    )
    as_username = token_request(
        client, tenant.id, grant_type="password", username="me@example.com", password=PASSWORD
    )

    assert _sub(by_email) == _sub(as_username) == "late-1"


def test_a_password_attempt_costs_one_verification_however_many_hold_the_address(
    app: Flask, client: FlaskClient, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22: with 2+ password holders of an address a wrong password took 205 ms
    against 57 ms (one argon2 verification per holder), which told that they exist."""
    own = "holder {}'s own pass".format
    ids = _holders(app, tenant, 4, own)
    stored = {_tag(app, tenant.id, uid, own(i)) for i, uid in enumerate(ids)}
    wrong = _password_matching_no_tag(app, tenant.id, ids, stored)
    factories.make_user(app, tenant.id, user_id="solo-1", email="solo@example.com", password=own(9))
    verify_calls = count_verifications(monkeypatch)

    for address in ("me@example.com", "solo@example.com", "nobody@example.com"):
        verify_calls.clear()
        answer = token_request(
            client, tenant.id, grant_type="password", email=address, password=wrong
        )
        assert_oauth_error(answer, 401, "invalid_grant")
        assert len(verify_calls) == 1, address
    # The right password of one holder: verified against that holder's hash, and against
    # an older holder's only where its tag happens to match too (one in 256 per holder).
    verify_calls.clear()
    answer = token_request(
        client, tenant.id, grant_type="password", email="me@example.com", password=own(2)
    )
    assert _sub(answer) == "holder-2"
    collisions = sum(
        _tag(app, tenant.id, ids[i], own(2)) == _tag(app, tenant.id, ids[i], own(i)) for i in (0, 1)
    )
    assert len(verify_calls) == 1 + collisions


def test_a_holder_without_a_tag_is_still_tried_and_gets_one_at_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    """Hashes stored before tags existed (migration 6fb623f829b8) have none."""
    from sqlalchemy import update

    from app.users.models import User

    _holders(app, tenant, 3, lambda i: f"holder {i}'s own pass")
    with app.app_context(), tenant_scope(tenant.id):
        db.session.execute(update(User).values(password_tag=None))
        db.session.commit()

    answer = token_request(
        client,
        tenant.id,
        grant_type="password",
        email="me@example.com",
        password="holder 1's own pass",
    )

    assert _sub(answer) == "holder-1"
    with app.app_context(), tenant_scope(tenant.id):
        tags = dict(db.session.execute(select_tags()).all())
    assert tags["holder-1"] == _tag(app, tenant.id, "holder-1", "holder 1's own pass")
    assert tags["holder-0"] is None and tags["holder-2"] is None


def test_tags_made_under_another_secret_key_shut_nobody_out(
    app: Flask, tenant: TenantHandle, database_url: str, tmp_path: Path
) -> None:
    """After SECRET_KEY changes, every stored tag is stale: such a tag says which key made
    it, so it is not trusted (the holder is tried), and the sign-in stores a current one."""
    _holders(app, tenant, 3, lambda i: f"holder {i}'s own pass")
    with variant_app(app, database_url, tmp_path) as rotated:  # a SECRET_KEY of its own
        assert rotated.config["SECRET_KEY"] != app.config["SECRET_KEY"]
        answer = token_request(
            rotated.test_client(),
            tenant.id,
            grant_type="password",
            email="me@example.com",
            password="holder 2's own pass",
        )
        assert _sub(answer) == "holder-2"
        with rotated.app_context(), tenant_scope(tenant.id):
            tags = dict(db.session.execute(select_tags()).all())
        assert tags["holder-2"] == _tag(rotated, tenant.id, "holder-2", "holder 2's own pass")
    assert tags["holder-0"] == _tag(app, tenant.id, "holder-0", "holder 0's own pass")


def select_tags() -> Any:
    from sqlalchemy import select

    from app.users.models import User

    return select(User.id, User.password_tag)


def test_a_username_and_an_email_of_one_account_share_its_limit(
    app: Flask, tenant: TenantHandle, database_url: str, tmp_path: Path
) -> None:
    """Issue 22: alternating username-only and email-only requests doubled the budget
    (each identifier had its own bucket)."""
    factories.make_user(
        app, tenant.id, user_id="vic-1", username="vic", email="vic@example.com", password=PASSWORD
    )
    with rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_SIGNIN_PER_ACCOUNT="4 per minute"
    ) as limited:
        client = limited.test_client()
        answers = [
            token_request(
                client, tenant.id, grant_type="password", password="guess", **{field: login}
            )
            for field, login in [("username", "vic"), ("email", "vic@example.com")] * 3
        ]

    for answer in answers[:4]:
        assert_oauth_error(answer, 401, "invalid_grant")
    for answer in answers[4:]:
        assert_oauth_error(answer, 429, "temporarily_unavailable")


# --- made-up kids cost neither memory nor queries ----------------------------------------


def test_unknown_kids_are_bounded_and_malformed_ones_never_reach_the_database(
    app: Flask, client: FlaskClient
) -> None:
    statements: list[str] = []

    def count(*args: Any, **kwargs: Any) -> None:
        statements.append(str(args[2]))

    header = {"alg": "RS256", "typ": "JWT"}

    def token_with(kid: Any) -> str:
        import base64

        def part(value: dict[str, Any]) -> str:
            raw = json.dumps(value).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        return f"{part({**header, 'kid': kid})}.{part({'sub': 'x'})}.c2ln"

    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for kid in ("x" * 5000, "../../etc", 12, "ABCDEF0123456789", "0123456789abcdefg"):
            answer = client.get("/user/profile", headers=bearer(token_with(kid)))
            assert answer.status_code == 401 and answer.get_json()["error"] == "invalid_token"
        assert not any("signing_key" in s for s in statements), statements
        for _ in range(signing.UNKNOWN_KID_CACHE_SIZE + 50):
            kid = uuid.uuid4().hex[:16]
            assert client.get("/user/profile", headers=bearer(token_with(kid))).status_code == 401
    finally:
        event.remove(engine, "before_cursor_execute", count)
    with app.app_context():
        cache = app.extensions["gatehouse.signing"]
        assert len(cache.unknown) <= signing.UNKNOWN_KID_CACHE_SIZE


# --- concurrent policy replacements do not merge -----------------------------------------


def test_concurrent_policy_puts_replace_instead_of_merging(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    created = client.post(
        "/api/v1/users/polly", json={"password": PASSWORD, "initial_policies": []}, headers=headers
    )
    assert created.status_code == 201
    sets = [
        [{"resource": f"r{n}-{i}", "resource_type": "table", "type": "read"} for i in range(5)]
        for n in range(2)
    ]
    for _ in range(5):
        barrier = threading.Barrier(2)
        answers: list[int] = []

        def put(
            policies: list[dict[str, str]],
            barrier: threading.Barrier = barrier,
            answers: list[int] = answers,
        ) -> None:
            own = app.test_client()
            barrier.wait()
            answer = own.put("/api/v1/users/polly/policies", json=policies, headers=headers)
            answers.append(answer.status_code)

        threads = [threading.Thread(target=put, args=(s,)) for s in sets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert answers == [200, 200]
        final = client.get("/api/v1/users/polly/policies", headers=headers).get_json()
        assert final in sets, final


# --- full matches: a trailing newline is no new name ---------------------------------------


@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%20"])
def test_a_name_with_a_trailing_newline_is_no_new_name(
    app: Flask, client: FlaskClient, tenant: TenantHandle, suffix: str
) -> None:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    assert (
        client.post("/api/v1/users/dirA", json={"password": PASSWORD}, headers=headers).status_code
        == 201
    )
    by_path = client.post(
        f"/api/v1/users/dirA{suffix}", json={"password": PASSWORD}, headers=headers
    )
    assert by_path.status_code == 400, by_path.get_data(as_text=True)
    assert by_path.get_json()["code"] == "INVALID_USERNAME"
    uid = "dirA" + suffix.replace("%0A", "\n").replace("%0D", "\r").replace("%20", " ")
    by_uid = client.post(
        "/auth/user", json={"uid": uid, "password": PASSWORD}, headers=tenant.m2_headers
    )
    assert by_uid.status_code == 400, by_uid.get_data(as_text=True)
    assert factories.count_users(app, tenant.id) == 1


# --- a stolen access token cannot change the password or email ---------------------------


def test_self_service_password_and_email_changes_need_a_recent_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(
        app,
        tenant.id,
        user_id="sam-1",
        username="sam",
        email="sam@example.com",
        password=PASSWORD,
    )
    session = sign_in(client, tenant.id, "sam")
    factories.age_sessions(app, tenant.id, 3600)
    # A refresh keeps the original sign-in time.
    stale = refresh(client, session["refresh_token"], tenant.id).get_json()
    auth_time = jwt.decode(stale["access_token"], options={"verify_signature": False})["auth_time"]
    assert isinstance(auth_time, int)

    me = client.put(
        "/users/me", json={"password": "new long password"}, headers=bearer(stale["access_token"])
    )
    assert me.status_code == 401, me.get_data(as_text=True)
    assert me.get_json()["error"] == "REAUTHENTICATION_REQUIRED"
    assert me.headers["WWW-Authenticate"].startswith("Bearer")
    directory = client.put(
        "/api/v1/users/sam/password",
        json={"new_password": "new long password"},
        headers=bearer(stale["access_token"]),
    )
    assert directory.status_code == 401
    assert directory.get_json()["code"] == "REAUTHENTICATION_REQUIRED"
    email = client.patch(
        "/users/sam-1", json={"email": "thief@example.com"}, headers=bearer(stale["access_token"])
    )
    assert email.status_code == 401
    assert email.get_json()["error"] == "reauthentication_required"
    assert factories.password_matches(app, tenant.id, "sam-1", PASSWORD)
    # Other edits need no fresh sign-in.
    named = client.put(
        "/users/me", json={"firstname": "Sam"}, headers=bearer(stale["access_token"])
    )
    assert named.status_code == 200

    # Signing in again allows the change; an API key never needs it.
    fresh = sign_in(client, tenant.id, "sam")
    changed = client.put(
        "/users/me", json={"password": "new long password"}, headers=bearer(fresh["access_token"])
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    by_key = client.put(
        "/api/v1/users/sam/password",
        json={"new_password": "yet another password"},
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert by_key.status_code == 200


def test_an_admin_changing_its_own_email_needs_a_recent_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    """The Management API PATCH lets an admin token change its own email: self-service,
    so it needs a recent sign-in too; changing another user's does not."""
    factories.make_user(
        app,
        tenant.id,
        user_id="ada-1",
        username="ada",
        password=PASSWORD,
        permissions_group="admin",
    )
    factories.make_user(app, tenant.id, user_id="bob-1", email="bob@example.com")
    stale = factories.stale_session(app, client, tenant.id, "ada", PASSWORD)["access_token"]

    own = client.patch(
        "/api/v2/users/ada-1", json={"email": "thief@example.com"}, headers=bearer(stale)
    )
    assert own.status_code == 401, own.get_data(as_text=True)
    assert own.get_json()["errorCode"] == "reauthentication_required"
    other = client.patch(
        "/api/v2/users/bob-1", json={"email": "bob@elsewhere.example"}, headers=bearer(stale)
    )
    assert other.status_code == 200, other.get_data(as_text=True)


# --- narrow keys ------------------------------------------------------------------------


def test_custom_token_sign_in_and_refresh_need_the_token_scope(
    app: Flask, client: FlaskClient
) -> None:
    tenant = factories.make_tenant(app, "tokco", allow_user_token_management=True)
    narrow = factories.make_key(app, tenant.id, ["read:users"])
    minted = client.post(
        "/token/generate", json={"userId": "kim"}, headers=tenant.m2_headers
    ).get_json()
    headers = {"x-api-key": narrow, "x-m2-organization-id": tenant.id}
    signin = client.post("/token/signin", json={"token": minted["token"]}, headers=headers)
    assert signin.status_code == 403 and signin.get_json()["error"] == "insufficient_scope"
    session = client.post(
        "/token/signin", json={"token": minted["token"]}, headers=tenant.m2_headers
    )
    assert session.status_code == 200  # the refused try did not use the token up
    body = {"refreshToken": session.get_json()["refreshToken"]}
    refused = client.post("/token/refresh", json=body, headers=headers)
    assert refused.status_code == 403 and refused.get_json()["error"] == "insufficient_scope"
    assert client.post("/token/refresh", json=body, headers=tenant.m2_headers).status_code == 200


# --- logs never hold a secret ----------------------------------------------------------


def test_a_failing_query_logs_no_bound_values(
    app: Flask, client: FlaskClient, tenant: TenantHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """A database error inside a request is logged without its parameters (the INSERT of a
    user carries the password hash)."""
    with app.app_context():
        db.session.execute(
            text(
                "CREATE OR REPLACE FUNCTION refuse_trap() RETURNS trigger AS $$ BEGIN "
                "IF NEW.username = 'trap' THEN RAISE EXCEPTION 'refused by test trigger'; "
                "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        db.session.execute(
            text(
                "CREATE TRIGGER refuse_trap BEFORE INSERT ON user_account "
                "FOR EACH ROW EXECUTE FUNCTION refuse_trap()"
            )
        )
        db.session.commit()
    try:
        caplog.set_level("DEBUG")
        answer = client.post(
            "/api/v1/users/trap",
            json={"password": "a password nobody may log"},
            headers={"Authorization": f"Bearer {tenant.key}"},
        )
        assert answer.status_code == 500
        assert answer.get_json()["request_id"] in caplog.text
        assert "refused by test trigger" in caplog.text  # the error itself is logged
        assert "$argon2" not in caplog.text
        assert "a password nobody may log" not in caplog.text
        assert "parameters hidden" in caplog.text
    finally:
        with app.app_context():
            db.session.execute(text("DROP TRIGGER IF EXISTS refuse_trap ON user_account"))
            db.session.execute(text("DROP FUNCTION IF EXISTS refuse_trap()"))
            db.session.commit()


# --- instance files are the owner's alone ------------------------------------------------


def test_instance_files_are_created_owner_only(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    dev = create_app(
        make_config(
            f"sqlite:///{instance / 'gatehouse.db'}",
            instance,
            APP_ENV="development",
            REDIS_URL="",
            CELERY_BROKER_URL="",
            SECRET_KEY="",
            ENCRYPTION_KEYS="",
            ROOT_API_KEY="",
        )
    )
    try:
        import flask_migrate

        with dev.app_context():
            flask_migrate.upgrade()
        tenant = factories.make_tenant(dev, "devco", password_reset_hosts=[RESET_HOST])
        factories.make_user(dev, tenant.id, user_id="d1", username="dee", email="dee@example.com")
        asked = dev.test_client().post(
            "/auth/password-reset",
            json={"email": "dee@example.com", "host": RESET_HOST},
            headers={"X-Tenant-ID": tenant.id},
        )
        assert asked.status_code == 200
        mails = factories.wait_until(lambda: list((instance / "outbox").glob("*.eml")))
        assert len(mails) == 1

        def mode(path: Path) -> int:
            return stat.S_IMODE(path.stat().st_mode)

        assert mode(instance) == 0o700
        assert mode(instance / "gatehouse.db") == 0o600
        assert mode(instance / "secrets.json") == 0o600
        assert mode(instance / "outbox") == 0o700
        assert mode(mails[0]) == 0o600
    finally:
        with dev.app_context():
            db.engine.dispose()
