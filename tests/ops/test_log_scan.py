"""The logs of whole journeys and of failing requests hold no password, hash, token, API
key or secret value (SPEC §7): every record of every logger, the worker thread's too."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.conftest import ROOT_KEY
from tests.factories import PASSWORD
from tests.oauth_support import bearer, refresh, sign_in
from tests.postmark_fake import FakePostmark

NEW_PASSWORD = "log-scan password 2"
SECRET_VALUE = "log-scan-secret-value-42"
HOST = "app.example.com"
LINK = re.compile(r"https://app\.example\.com/reset-password\?token=([^\s\"'<>&]+)")


def test_journeys_and_failures_leave_no_secret_in_the_logs(
    app: Flask,
    client: FlaskClient,
    postmark: FakePostmark,
    celery_worker: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    leaks: list[str] = [PASSWORD, NEW_PASSWORD, SECRET_VALUE, ROOT_KEY, "$argon2"]

    root = {"X-APIKEY": ROOT_KEY}
    tenant = client.post(
        "/tenants",
        json={
            "name": "logco",
            "settings": {
                "allow_user_token_management": True,
                "email_from": "noreply@example.com",
                "postmark_server_token": "pm-log-scan-token",
                "password_reset_hosts": [HOST],
            },
        },
        headers=root,
    ).get_json()
    leaks.append("pm-log-scan-token")
    key = client.post(f"/tenants/{tenant['id']}/api-keys", json={}, headers=root).get_json()["key"]
    leaks.append(key)
    headers = {"X-APIKEY": key, "X-Tenant-ID": tenant["id"]}

    # Users, sign-in, refresh, secrets.
    created = client.post(
        "/api/v1/users/lola", json={"password": PASSWORD}, headers=bearer(key)
    ).get_json()
    leaks.append(created["password_hash"])
    client.post(
        "/auth/user",
        json={"uid": "lola-mail", "email": "lola@example.com", "password": PASSWORD},
        headers=headers,
    )
    session = sign_in(client, tenant["id"], "lola", PASSWORD)
    rotated = refresh(client, session["refresh_token"], tenant["id"]).get_json()
    leaks += [session[k] for k in ("access_token", "refresh_token", "id_token")]
    leaks += [rotated[k] for k in ("access_token", "refresh_token")]
    user_id = client.get("/users/current", headers=bearer(rotated["access_token"])).get_json()[
        "uid"
    ]
    secret = client.post(
        f"/user/{user_id}/secrets",
        json={"name": "pin", "value": SECRET_VALUE},
        headers=bearer(rotated["access_token"]),
    ).get_json()
    read = client.get(
        f"/user/{user_id}/secrets/{secret['id']}/value", headers=bearer(rotated["access_token"])
    )
    assert read.get_data(as_text=True) == SECRET_VALUE

    # Custom tokens.
    minted = client.post("/token/generate", json={"userId": "custom-1"}, headers=headers).get_json()
    leaks.append(minted["token"])
    exchanged = client.post("/token/signin", json={"token": minted["token"]}, headers=headers)
    leaks += [exchanged.get_json()[k] for k in ("idToken", "refreshToken", "accessToken")]

    # Password reset through the real worker and the Postmark stand-in.
    asked = client.post(
        "/auth/password-reset",
        json={"email": "lola@example.com", "host": HOST},
        headers={"X-Tenant-ID": tenant["id"]},
    )
    assert asked.get_json() == {"msg": "ok"}
    [mail] = factories.wait_until(lambda: postmark.mails())
    match = LINK.search(html.unescape(mail.body["HtmlBody"]))
    assert match
    reset_token = unquote(match.group(1))
    leaks += [reset_token, match.group(1)]
    confirmed = client.post(
        "/auth/password-reset/confirm", json={"token": reset_token, "password": NEW_PASSWORD}
    )
    assert confirmed.get_json() == {"msg": "ok"}

    # Failures: wrong passwords, replayed and forged tokens, bad keys, a reused reset link.
    failures = [
        client.post(
            "/oauth/token",
            data={"grant_type": "password", "username": "lola", "password": PASSWORD + "x"},
            headers={"X-Tenant-ID": tenant["id"]},
        ),
        refresh(client, session["refresh_token"] + "x", tenant["id"]),
        client.get("/user/profile", headers=bearer(session["access_token"] + "x")),
        client.get("/user/profile", headers={"X-APIKEY": key + "x", "X-Tenant-ID": tenant["id"]}),
        client.post("/token/signin", json={"token": minted["token"]}, headers=headers),
        client.post(
            "/auth/password-reset/confirm", json={"token": reset_token, "password": NEW_PASSWORD}
        ),
        client.put(
            "/users/me", json={"password": "short"}, headers=bearer(rotated["access_token"])
        ),
    ]
    assert all(400 <= f.status_code < 500 for f in failures), [f.status_code for f in failures]

    text = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert caplog.records, "the journeys logged nothing at all: the scan would prove nothing"
    found = [leak[:12] + "…" for leak in leaks if leak and leak in text]
    assert found == []
