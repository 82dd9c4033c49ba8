"""The embedded defaults of `make run` (SQLite, eager tasks, memory rate limits, mail to
the outbox) run the same journeys as the PostgreSQL + Redis deployment."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import flask_migrate
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ROOT_KEY, make_config
from tests.factories import PASSWORD, totp_code, wait_until


@pytest.fixture()
def embedded(tmp_path: Path) -> Iterator[Flask]:
    from app import create_app
    from app.core.db import db

    config = make_config(
        f"sqlite:///{tmp_path / 'embedded.db'}",
        tmp_path,
        APP_ENV="development",
        REDIS_URL="",
        CELERY_BROKER_URL="",
        POSTMARK_API_URL="http://127.0.0.1:1",
        RATELIMIT_SIGNIN_PER_ACCOUNT="3 per minute",
    )
    app = create_app(config)
    assert app.config["CELERY_TASK_ALWAYS_EAGER"] is True
    with app.app_context():
        flask_migrate.upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


def _bootstrap(app: Flask) -> tuple[str, dict[str, str]]:
    result = app.test_cli_runner().invoke(args=["bootstrap"])
    assert result.exit_code == 0, result.output
    fields = {
        label.strip(): value.strip()
        for label, value in (line.split(":", 1) for line in result.output.strip().splitlines())
    }
    assert fields["Root API key"] == ROOT_KEY
    return fields["Demo tenant id"], {"X-APIKEY": fields["Demo API key"]}


def test_sign_in_tokens_secrets_and_audit_work_embedded(embedded: Flask) -> None:
    client: FlaskClient = embedded.test_client()
    tenant_id, key = _bootstrap(embedded)
    created = client.post(
        "/auth/user",
        json={"uid": "emma", "email": "emma@example.com", "password": PASSWORD},
        headers=key,
    )
    assert created.status_code == 200

    signed = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "emma@example.com", "password": PASSWORD},
        headers={"X-Tenant-ID": tenant_id},
    )
    assert signed.status_code == 200, signed.get_data(as_text=True)
    bearer = {"Authorization": f"Bearer {signed.get_json()['access_token']}"}
    profile = client.get("/user/profile", headers=bearer)
    assert profile.status_code == 200 and profile.get_json()["logins_count"] == 1
    # Embedded mode writes activity through (no Redis to buffer it).
    assert client.get("/users/me", headers=bearer).get_json()["last_activity"] is not None

    refreshed = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": signed.get_json()["refresh_token"]},
    )
    assert refreshed.status_code == 200

    secret = client.post(
        "/user/emma/secrets", json={"name": "pin", "value": "1234"}, headers=bearer
    ).get_json()
    value = client.get(f"/user/emma/secrets/{secret['id']}/value", headers=bearer)
    assert value.get_data(as_text=True) == "1234"

    # The demo tenant allows custom tokens; the audit tasks run in-process after the answer.
    minted = client.post("/token/generate", json={"userId": "newbie"}, headers=key).get_json()
    session = client.post("/token/signin", json={"token": minted["token"]}, headers=key)
    assert session.status_code == 200 and session.get_json()["isNewUser"] is True

    def actions() -> set[str]:
        events = client.get("/audit-events", headers=key).get_json()["items"]
        return {event["action"] for event in events}

    wanted = {"token.custom_issued", "secret.value_read", "user.signed_in"}
    assert wait_until(lambda: wanted <= actions()), actions()


def test_memory_rate_limits_apply_embedded(embedded: Flask) -> None:
    client = embedded.test_client()
    tenant_id, _ = _bootstrap(embedded)
    answers = [
        client.post(
            "/oauth/token",
            data={"grant_type": "password", "username": "nobody", "password": "x"},
            headers={"X-Tenant-ID": tenant_id},
        )
        for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert int(answers[-1].headers["Retry-After"]) > 0


def test_password_reset_mail_goes_to_the_outbox_embedded(embedded: Flask, tmp_path: Path) -> None:
    client = embedded.test_client()
    tenant_id, key = _bootstrap(embedded)
    root = {"X-APIKEY": ROOT_KEY}
    client.patch(
        f"/tenants/{tenant_id}",
        json={"settings": {"password_reset_hosts": ["app.local"]}},
        headers=root,
    )
    client.post(
        "/auth/user",
        json={"uid": "rita", "email": "rita@example.com", "password": PASSWORD},
        headers=key,
    )
    asked = client.post(
        "/auth/password-reset",
        json={"email": "rita@example.com", "host": "app.local"},
        headers={"X-Tenant-ID": tenant_id},
    )
    assert asked.get_json() == {"msg": "ok"}
    # The mail is written in-process after the answer (so a hit answers as fast as a miss).
    [path] = wait_until(lambda: list((tmp_path / "outbox").glob("*.eml")))
    mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert mail["To"] == "rita@example.com"
    text = mail.get_body(("plain",)).get_content()
    token = unquote(text.split("https://app.local/reset-password?token=")[1].split()[0])
    confirmed = client.post(
        "/auth/password-reset/confirm", json={"token": token, "password": "a-new-password"}
    )
    assert confirmed.get_json() == {"msg": "ok"}
    signed = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": "rita@example.com",
            "password": "a-new-password",
        },
        headers={"X-Tenant-ID": tenant_id},
    )
    assert signed.status_code == 200


def test_second_factor_failures_are_kept_and_shown_embedded(embedded: Flask) -> None:
    """SQLite and no Redis: a wrong code's audit row and count are written in their own
    transaction (the request's rolls back), and the budget lives in memory."""
    client = embedded.test_client()
    tenant_id, key = _bootstrap(embedded)
    created = client.post(
        "/auth/user",
        json={"uid": "otto", "email": "otto@example.com", "password": PASSWORD},
        headers=key,
    )
    assert created.status_code == 200
    grant = {"grant_type": "password", "username": "otto@example.com", "password": PASSWORD}
    tenant = {"X-Tenant-ID": tenant_id}
    access = client.post("/oauth/token", data=grant, headers=tenant).get_json()["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    secret = client.post("/users/me/mfa/totp", headers=bearer).get_json()["secret"]
    confirm = client.post(
        "/users/me/mfa/totp/confirm", json={"code": totp_code(secret)}, headers=bearer
    )
    assert confirm.status_code == 200

    wrong = client.post("/oauth/token", data={**grant, "otp": "000000"}, headers=tenant)
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_grant"
    right = client.post(
        "/oauth/token", data={**grant, "otp": totp_code(secret, time.time() + 30)}, headers=tenant
    )

    assert right.status_code == 200, right.get_data(as_text=True)
    events = client.get("/audit-events", headers=key).get_json()["items"]
    failed = [e["data"]["reason"] for e in events if e["action"] == "user.signin_failed"]
    signed_in = [e["data"] for e in events if e["action"] == "user.signed_in"]
    assert failed == ["wrong_otp"]
    assert signed_in[0] == {"method": "password", "second_factor_failures": 1}
