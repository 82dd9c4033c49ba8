"""Imported password hashes at sign-in (issue 24), on every path that verifies a password:
the password grant and the hosted login page (with and without a second factor). A
foreign hash signs in with its own algorithm, is replaced by argon2id in the sign-in's
transaction and audited once as `user.password_rehashed` with its former scheme (never
the hash); a wrong password changes nothing. A weak hash under the tenant's "reset"
policy is refused with `password_reset_required` even with the right password, stays as
it is, and the reset flow lets the user in. Paths that set a password without verifying
one (the directory's and me's password changes) replace an imported hash and audit only
the change. The directory never shows an imported hash.

The foreign hashes are built with the reference libraries (bcrypt, hashlib) or a published
vector (Firebase's scrypt README), never with the code under test."""

from __future__ import annotations

import base64
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import bcrypt
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.core import security
from app.core.db import db
from app.core.tenancy import tenant_scope
from app.credentials import foreign_hashes
from app.credentials.foreign_hashes import FirebaseHashConfig
from app.users import service as user_service
from tests import factories
from tests.factories import PASSWORD, AppHandle, TenantHandle, bearer
from tests.oauth_support import (
    assert_oauth_error,
    audit_events,
    confirmed_totp,
    count_verifications,
    form_fields,
    login_page,
    make_alice,
    sign_in_through_page,
    submit_login,
    token_request,
)
from tests.postmark_fake import FakePostmark

WRONG = PASSWORD + "!"
NEW_PASSWORD = "a brand new staple 42"
REDIRECT = "http://127.0.0.1:8765/callback"
HOST = "app.example.com"
FIREBASE = {  # github.com/firebase/scrypt README: the project parameters and one user
    "base64_signer_key": (
        "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA=="
    ),
    "base64_salt_separator": "Bw==",
    "rounds": 8,
    "mem_cost": 14,
}
FIREBASE_PASSWORD = "user1password"


# --- foreign hashes of PASSWORD (or of Firebase's published user), by the reference libraries


def bcrypt_hash(password: str = PASSWORD, cost: int = 4) -> str:
    return foreign_hashes.from_string(
        bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    )


def salted_digest(algorithm: str, password: str = PASSWORD) -> str:
    salt = b"pinch of salt"
    digest = hashlib.new(algorithm, salt + password.encode()).hexdigest()
    return foreign_hashes.from_custom_password_hash(
        {
            "algorithm": algorithm,
            "hash": {"value": digest, "encoding": "hex"},
            "salt": {"value": salt.hex(), "encoding": "hex", "position": "prefix"},
        }
    )


def unsalted_sha256(password: str = PASSWORD) -> str:
    digest = hashlib.sha256(password.encode()).hexdigest()
    return foreign_hashes.from_custom_password_hash(
        {"algorithm": "sha256", "hash": {"value": digest, "encoding": "hex"}}
    )


def django_pbkdf2(password: str = PASSWORD) -> str:
    raw = hashlib.pbkdf2_hmac("sha256", password.encode(), b"djangosalt", 1000)
    return foreign_hashes.from_string(
        f"pbkdf2_sha256$1000$djangosalt${base64.b64encode(raw).decode()}"
    )


def ldap_ssha(password: str = PASSWORD) -> str:
    salt = b"\x01\x02\x03\x04"
    raw = hashlib.sha1(password.encode() + salt).digest() + salt
    return foreign_hashes.from_string("{SSHA}" + base64.b64encode(raw).decode())


def firebase_scrypt() -> str:
    return foreign_hashes.from_firebase(
        "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ==",
        "42xEC+ixf3L2lw==",
        FirebaseHashConfig.from_mapping(FIREBASE),
    )


# (builder, password, scheme the audit names, weak)
FORMATS = {
    "bcrypt": (bcrypt_hash, PASSWORD, "bcrypt", False),
    "md5-salted": (lambda: salted_digest("md5"), PASSWORD, "md5", True),
    "sha256-salted": (lambda: salted_digest("sha256"), PASSWORD, "sha256", False),
    "sha256-unsalted": (unsalted_sha256, PASSWORD, "sha256", True),
    "django-pbkdf2": (django_pbkdf2, PASSWORD, "django-pbkdf2_sha256", False),
    "ldap-ssha": (ldap_ssha, PASSWORD, "ldap-ssha", True),
    "firebase-scrypt": (firebase_scrypt, FIREBASE_PASSWORD, "firebase-scrypt", False),
}


# --- state


def import_hash(app: Flask, tenant_id: str, user_id: str, stored: str) -> None:
    """Give a user an imported hash, as the importer stores it (no tag: none is known)."""
    with app.app_context(), tenant_scope(tenant_id):
        user = user_service.get_user(user_id)
        user.password_hash = stored
        user.password_tag = None
        db.session.commit()


def stored_hash(app: Flask, tenant_id: str, user_id: str) -> str | None:
    with app.app_context(), tenant_scope(tenant_id):
        return user_service.get_user(user_id).password_hash


def imported_user(app: Flask, tenant_id: str, stored: str, **fields: Any) -> str:
    user_id = make_alice(app, tenant_id, **fields)
    import_hash(app, tenant_id, user_id, stored)
    return user_id


def rehashed(client: FlaskClient, tenant: TenantHandle) -> list[dict[str, Any]]:
    return audit_events(client, tenant.headers, "user.password_rehashed")


def failures(client: FlaskClient, tenant: TenantHandle) -> list[str]:
    events = audit_events(client, tenant.headers, "user.signin_failed")
    return [event["data"]["reason"] for event in events]


def grant(client: FlaskClient, tenant_id: str, password: str, login: str = "alice") -> Any:
    return token_request(
        client, tenant_id, grant_type="password", username=login, password=password
    )


def assert_rehash_event(event: dict[str, Any], user_id: str, scheme: str, weak: bool) -> None:
    assert event["user_id"] == user_id
    assert event["actor"] == f"user:{user_id}"
    assert event["data"] == {"from": scheme, "weak": weak}


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, redirect_uris=[REDIRECT])


@pytest.fixture()
def strict(app: Flask) -> TenantHandle:
    """A tenant that requires a reset for weak imported hashes."""
    return factories.make_tenant(app, "strict", weak_password_hashes="reset")


# --- the password grant


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_password_grant_upgrades_an_imported_hash_once(
    app: Flask, client: FlaskClient, tenant: TenantHandle, kind: str
) -> None:
    build, password, scheme, weak = FORMATS[kind]
    stored = build()
    assert foreign_hashes.is_weak(stored) is weak
    user_id = imported_user(app, tenant.id, stored)

    assert_oauth_error(grant(client, tenant.id, password + "!"), 401, "invalid_grant")
    assert stored_hash(app, tenant.id, user_id) == stored
    assert rehashed(client, tenant) == []

    first = grant(client, tenant.id, password)
    assert first.status_code == 200, first.get_data(as_text=True)
    upgraded = stored_hash(app, tenant.id, user_id)
    assert upgraded is not None and upgraded.startswith("$argon2id$")
    assert factories.password_matches(app, tenant.id, user_id, password)
    [event] = rehashed(client, tenant)
    assert_rehash_event(event, user_id, scheme, weak)
    assert stored not in str(event)

    second = grant(client, tenant.id, password)
    assert second.status_code == 200, second.get_data(as_text=True)
    assert stored_hash(app, tenant.id, user_id) == upgraded  # nothing left to upgrade
    assert len(rehashed(client, tenant)) == 1
    assert_oauth_error(grant(client, tenant.id, password + "!"), 401, "invalid_grant")
    assert len(audit_events(client, tenant.headers, "user.signed_in")) == 2


def test_an_imported_hash_signs_in_by_email_too(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    user_id = imported_user(app, tenant.id, bcrypt_hash())
    response = grant(client, tenant.id, PASSWORD, login="alice@example.com")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert stored_hash(app, tenant.id, user_id).startswith("$argon2id$")  # type: ignore[union-attr]
    assert len(rehashed(client, tenant)) == 1


def test_concurrent_first_sign_ins_both_succeed_and_leave_one_argon2_hash(
    app: Flask, tenant: TenantHandle, live_server: str, client: FlaskClient
) -> None:
    # Real threads through a real HTTP server, each request in its own PostgreSQL
    # transaction: both read the bcrypt hash before either writes.
    user_id = imported_user(app, tenant.id, bcrypt_hash(cost=10))
    racers = 2
    start = threading.Barrier(racers)

    def attempt(_: int) -> requests.Response:
        start.wait(timeout=10)
        return requests.post(
            f"{live_server}/oauth/token",
            data={"grant_type": "password", "username": "alice", "password": PASSWORD},
            headers={"X-Tenant-ID": tenant.id},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=racers) as pool:
        responses = list(pool.map(attempt, range(racers)))

    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    upgraded = stored_hash(app, tenant.id, user_id)
    assert upgraded is not None and upgraded.startswith("$argon2id$")
    assert factories.password_matches(app, tenant.id, user_id, PASSWORD)
    [event] = rehashed(client, tenant)
    assert_rehash_event(event, user_id, "bcrypt", False)
    assert len(audit_events(client, tenant.headers, "user.signed_in")) == 2
    assert grant(client, tenant.id, PASSWORD).status_code == 200


def test_a_fast_imported_digest_costs_what_an_unknown_login_costs(
    app: Flask, client: FlaskClient, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # md5 takes microseconds: its check is padded with the dummy argon2id verification an
    # unknown login gets, so timing does not tell which accounts hold such a hash.
    imported_user(app, tenant.id, salted_digest("md5"))
    verified = count_verifications(monkeypatch)
    assert_oauth_error(grant(client, tenant.id, WRONG), 401, "invalid_grant")
    assert_oauth_error(grant(client, tenant.id, WRONG, login="nobody"), 401, "invalid_grant")
    assert verified == [security._DUMMY_HASH, security._DUMMY_HASH]


# --- the hosted login page


def test_login_page_upgrades_an_imported_hash(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    stored = salted_digest("md5")
    user_id = imported_user(app, tenant.id, stored)

    page = login_page(client, web)
    refused = submit_login(client, page, "alice", WRONG)
    assert refused.status_code == 401
    assert 'data-code="invalid_grant"' in refused.get_data(as_text=True)
    assert stored_hash(app, tenant.id, user_id) == stored

    answer, _, _ = sign_in_through_page(client, web, "alice")
    assert "code" in answer
    upgraded = stored_hash(app, tenant.id, user_id)
    assert upgraded is not None and upgraded.startswith("$argon2id$")
    [event] = rehashed(client, tenant)
    assert_rehash_event(event, user_id, "md5", True)

    browser = app.test_client()  # a new browser: no sign-in session, the form again
    again, _, _ = sign_in_through_page(browser, web, "alice")
    assert "code" in again
    assert stored_hash(app, tenant.id, user_id) == upgraded
    assert len(rehashed(client, tenant)) == 1


def test_login_page_upgrades_before_the_second_factor(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    user_id = make_alice(app, tenant.id)
    session = factories.sign_in(client, tenant.id, "alice")
    confirmed_totp(client, session["access_token"])
    stored = bcrypt_hash()
    import_hash(app, tenant.id, user_id, stored)

    page = login_page(client, web)
    step = submit_login(client, page, "alice", PASSWORD)
    assert step.status_code == 200, step.get_data(as_text=True)
    assert "pending" in form_fields(step.get_data(as_text=True))  # the second-factor form
    upgraded = stored_hash(app, tenant.id, user_id)
    assert upgraded is not None and upgraded.startswith("$argon2id$")
    [event] = rehashed(client, tenant)
    assert_rehash_event(event, user_id, "bcrypt", False)


# --- the weak-hash policy


def test_reset_policy_refuses_a_weak_hash_even_with_the_right_password(
    app: Flask, client: FlaskClient, strict: TenantHandle
) -> None:
    stored = salted_digest("md5")
    user_id = imported_user(app, strict.id, stored)

    assert_oauth_error(grant(client, strict.id, WRONG), 401, "invalid_grant")
    refused = assert_oauth_error(grant(client, strict.id, PASSWORD), 403, "invalid_grant")
    assert refused["error_description"].startswith("password_reset_required: ")
    assert stored_hash(app, strict.id, user_id) == stored  # not upgraded
    assert rehashed(client, strict) == []
    assert failures(client, strict) == ["password_reset_required", "wrong_password"]
    assert audit_events(client, strict.headers, "user.signed_in") == []


def test_reset_policy_on_the_login_page(
    app: Flask, client: FlaskClient, strict: TenantHandle
) -> None:
    web = factories.make_application(app, strict.id, redirect_uris=[REDIRECT])
    stored = unsalted_sha256()
    user_id = imported_user(app, strict.id, stored)

    page = login_page(client, web)
    wrong = submit_login(client, page, "alice", WRONG)
    assert wrong.status_code == 401
    assert 'data-code="invalid_grant"' in wrong.get_data(as_text=True)
    refused = submit_login(client, login_page(client, web), "alice", PASSWORD)
    assert refused.status_code == 403
    assert 'data-code="password_reset_required"' in refused.get_data(as_text=True)
    assert "Location" not in refused.headers
    assert stored_hash(app, strict.id, user_id) == stored


def test_reset_policy_lets_strong_imported_hashes_in(
    app: Flask, client: FlaskClient, strict: TenantHandle
) -> None:
    user_id = imported_user(app, strict.id, salted_digest("sha256"))
    response = grant(client, strict.id, PASSWORD)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert stored_hash(app, strict.id, user_id).startswith("$argon2id$")  # type: ignore[union-attr]
    [event] = rehashed(client, strict)
    assert_rehash_event(event, user_id, "sha256", False)


def test_the_reset_flow_lets_a_weak_hash_user_in(
    app: Flask, client: FlaskClient, postmark: FakePostmark, celery_worker: Any
) -> None:
    from tests.surfaces.test_password_reset import confirm, mailed_token

    mail = factories.make_tenant(
        app,
        "strict-mail",
        weak_password_hashes="reset",
        email_from="noreply@example.com",
        postmark_server_token="pm-token-1",
        password_reset_hosts=[HOST],
    )
    user_id = imported_user(app, mail.id, salted_digest("sha1"))
    assert_oauth_error(grant(client, mail.id, PASSWORD), 403, "invalid_grant")

    token = mailed_token(client, postmark, mail.id, email="alice@example.com")
    confirmed = confirm(client, token, NEW_PASSWORD)
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)

    assert stored_hash(app, mail.id, user_id).startswith("$argon2id$")  # type: ignore[union-attr]
    assert_oauth_error(grant(client, mail.id, PASSWORD), 401, "invalid_grant")
    assert grant(client, mail.id, NEW_PASSWORD).status_code == 200
    assert rehashed(client, mail) == []  # a reset is a new password, not an upgrade


def test_operators_set_the_weak_hash_policy(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    stored = salted_digest("md5")
    imported_user(app, tenant.id, stored)
    changed = client.patch(
        f"/tenants/{tenant.id}",
        json={"settings": {"weak_password_hashes": "reset"}},
        headers=root_headers,
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    assert changed.get_json()["settings"]["weak_password_hashes"] == "reset"
    assert_oauth_error(grant(client, tenant.id, PASSWORD), 403, "invalid_grant")

    back = client.patch(
        f"/tenants/{tenant.id}",
        json={"settings": {"weak_password_hashes": "accept"}},
        headers=root_headers,
    )
    assert back.get_json()["settings"]["weak_password_hashes"] == "accept"
    assert grant(client, tenant.id, PASSWORD).status_code == 200
    [event] = rehashed(client, tenant)
    assert event["data"] == {"from": "md5", "weak": True}


# --- paths that set a password without verifying one; the directory's view of a hash


def test_directory_shows_no_imported_hash_until_a_sign_in_replaces_it(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    stored = bcrypt_hash()
    user_id = imported_user(app, tenant.id, stored)
    admin = bearer(tenant.key)

    shown = client.get("/api/v1/users/alice", headers=admin)
    assert shown.status_code == 200, shown.get_data(as_text=True)
    assert shown.get_json() == {"username": "alice", "password_hash": None}
    assert stored not in shown.get_data(as_text=True)
    etag = client.get(f"/user/{user_id}", headers=tenant.headers).headers["ETag"]

    assert grant(client, tenant.id, PASSWORD).status_code == 200
    after = client.get("/api/v1/users/alice", headers=admin)
    decoded = base64.b64decode(after.get_json()["password_hash"]).decode()
    assert decoded.startswith("$argon2id$")
    assert decoded == stored_hash(app, tenant.id, user_id)
    # The rehash is an edit of what the directory shows: the user's version (ETag) moves.
    assert client.get(f"/user/{user_id}", headers=tenant.headers).headers["ETag"] != etag


def test_a_password_change_replaces_an_imported_hash_without_a_rehash_event(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    user_id = imported_user(app, tenant.id, salted_digest("md5"))
    changed = client.put(
        "/api/v1/users/alice/password",
        json={"new_password": NEW_PASSWORD},
        headers=bearer(tenant.key),
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)

    assert stored_hash(app, tenant.id, user_id).startswith("$argon2id$")  # type: ignore[union-attr]
    assert factories.password_matches(app, tenant.id, user_id, NEW_PASSWORD)
    assert len(audit_events(client, tenant.headers, "user.password_changed")) == 1
    assert rehashed(client, tenant) == []
    assert_oauth_error(grant(client, tenant.id, PASSWORD), 401, "invalid_grant")
    assert grant(client, tenant.id, NEW_PASSWORD).status_code == 200
    assert rehashed(client, tenant) == []


def test_no_log_record_holds_an_imported_or_upgraded_hash(
    app: Flask, client: FlaskClient, strict: TenantHandle, caplog: pytest.LogCaptureFixture
) -> None:
    # Over the development server (werkzeug logs each request line), with a client that
    # even puts hashes in the URL: the sign-ins, the refusal, the upgrade and the reads.
    caplog.set_level("DEBUG")
    weak, strong = salted_digest("md5"), bcrypt_hash()
    weak_id = imported_user(app, strict.id, weak)
    strong_id = factories.make_user(app, strict.id, user_id="bob-1", username="bob")
    import_hash(app, strict.id, strong_id, strong)
    admin = bearer(strict.key)
    with factories.serve(app) as base:

        def sign_in(login: str, password: str) -> int:
            return requests.post(
                f"{base}/oauth/token",
                params={"passwordHash": weak, "custom_password_hash": strong},
                data={"grant_type": "password", "username": login, "password": password},
                headers={"X-Tenant-ID": strict.id},
                timeout=30,
            ).status_code

        assert sign_in("alice", WRONG) == 401
        assert sign_in("alice", PASSWORD) == 403  # password_reset_required
        assert sign_in("bob", PASSWORD) == 200  # upgraded
        upgraded = stored_hash(app, strict.id, strong_id)
        assert upgraded is not None and upgraded.startswith("$argon2id$")
        for name in ("alice", "bob"):
            shown = requests.get(
                f"{base}/api/v1/users/{name}", params={"seen": upgraded}, headers=admin, timeout=30
            )
            assert shown.status_code == 200
    assert stored_hash(app, strict.id, weak_id) == weak

    # The service's records (the test's own HTTP client, urllib3, logs its URLs too).
    ours = [r for r in caplog.records if r.name == "werkzeug" or r.name.split(".")[0] == "app"]
    assert sum(r.name == "werkzeug" for r in ours) >= 5, "request lines logged: the scan counts"
    text = "\n".join(r.getMessage() for r in ours) + str([r.args for r in ours])
    for leak in (weak, strong, upgraded, base64.b64encode(upgraded.encode()).decode(), PASSWORD):
        assert leak not in text and quote(leak, safe="") not in text, leak


def test_a_self_service_change_replaces_an_imported_hash_without_a_rehash_event(
    app: Flask, client: FlaskClient, celery_worker: Any
) -> None:
    # A user signed in without a password (a custom token, as a Firebase-style backend
    # does) still holds the imported hash, and changes the password on the me surface.
    backend = factories.make_tenant(app, "custom", allow_user_token_management=True)
    stored = bcrypt_hash()
    user_id = imported_user(app, backend.id, stored)
    minted = client.post("/token/generate", json={"userId": user_id}, headers=backend.m2_headers)
    assert minted.status_code == 200, minted.get_data(as_text=True)
    session = client.post(
        "/token/signin", json={"token": minted.get_json()["token"]}, headers=backend.m2_headers
    )
    assert session.status_code == 200, session.get_data(as_text=True)
    assert stored_hash(app, backend.id, user_id) == stored  # no password was verified

    changed = client.patch(
        "/users/me",
        json={"password": NEW_PASSWORD},
        headers=bearer(session.get_json()["accessToken"]),
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    assert stored_hash(app, backend.id, user_id).startswith("$argon2id$")  # type: ignore[union-attr]
    assert factories.password_matches(app, backend.id, user_id, NEW_PASSWORD)
    assert len(audit_events(client, backend.headers, "user.password_changed")) == 1
    assert rehashed(client, backend) == []
