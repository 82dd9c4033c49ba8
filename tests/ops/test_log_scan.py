"""The logs of whole journeys and of failing requests hold no password, hash, token, API
key or secret value (SPEC §7): every record of every logger, the worker thread's too."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

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


# Issue 22: with LOG_FORMAT=json gunicorn's access log recorded live verification links,
# whole ID tokens (`/logout?id_token_hint=…`) and `login_hint` addresses.
EMAIL = "lola.http@example.com"
VERIFY_LINK = re.compile(r"http://gatehouse\.test/verify-email\?token=([^\s\"'<>&]+)")
TEXT_ACCESS_FORMAT = (
    '%(h)s "%(r)s" %(s)s "%(f)s" "%({location}o)s" "%({authorization}i)s" "%({cookie}i)s"'
)


def _mailed_token(postmark: FakePostmark, count: int, link: re.Pattern[str]) -> str:
    mails = factories.wait_until(lambda: len(postmark.mails()) >= count and postmark.mails())
    match = link.search(html.unescape(mails[count - 1].body["HtmlBody"]))
    assert match, mails[count - 1].body
    return unquote(match.group(1))


def _journeys_over_http(app: Flask, base: str, postmark: FakePostmark) -> list[str]:
    """The journeys whose URLs carry credentials, hints and addresses, sent to a real
    server; the values no log line may hold."""
    import requests

    from tests.oauth_support import authorize_query, form_fields, pkce_pair, query_of

    web = requests.Session()
    root = {"X-APIKEY": ROOT_KEY}
    settings = {
        "email_from": "noreply@example.com",
        "postmark_server_token": "pm-http-log-scan",
        "password_reset_hosts": [HOST],
    }
    created = web.post(
        f"{base}/tenants", json={"name": "httplogs", "settings": settings}, headers=root
    )
    tenant_id = created.json()["id"]
    key = web.post(f"{base}/tenants/{tenant_id}/api-keys", json={}, headers=root).json()["key"]
    headers = {"X-APIKEY": key, "X-Tenant-ID": tenant_id}
    made = web.post(
        f"{base}/auth/user",
        json={"uid": "lola-http", "email": EMAIL, "password": PASSWORD},
        headers=headers,
    )
    assert made.status_code in (200, 201), made.text
    leaks = [PASSWORD, EMAIL, quote(EMAIL), key, ROOT_KEY]

    # The hosted code flow: /authorize with login_hint, state and nonce; the code comes
    # back in the Location of the sign-in's redirect.
    handle = factories.make_application(
        app, tenant_id, post_logout_redirect_uris=["http://127.0.0.1:8765/bye"]
    )
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge, login_hint=EMAIL)
    page = web.get(f"{base}/authorize", params=query)
    assert page.status_code == 200, page.text
    fields = {**form_fields(page.text), "username": EMAIL, "password": PASSWORD}
    answer = web.post(f"{base}/authorize", data=fields, allow_redirects=False)
    assert answer.status_code == 303, answer.text
    code = query_of(answer.headers["Location"])["code"]
    exchanged = web.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": handle.redirect_uri,
            "client_id": handle.client_id,
            "code_verifier": verifier,
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    app_tokens = exchanged.json()
    leaks += [code, verifier, query["state"], query["nonce"], app_tokens["id_token"]]
    leaks.append(app_tokens["access_token"])
    logout = {
        "id_token_hint": app_tokens["id_token"],
        "post_logout_redirect_uri": "http://127.0.0.1:8765/bye",
        "state": "logout-state-8c1f",
    }
    web.get(f"{base}/logout", params=logout, allow_redirects=False)
    leaks.append(logout["state"])

    # A password sign-in; its tokens then travel in query strings, as careless clients do.
    signed_in = web.post(
        f"{base}/oauth/token",
        headers={"X-Tenant-ID": tenant_id},
        data={"grant_type": "password", "username": EMAIL, "password": PASSWORD},
    )
    assert signed_in.status_code == 200, signed_in.text
    tokens = signed_in.json()
    leaks += [tokens["access_token"], tokens["id_token"], tokens.get("refresh_token", "")]
    user = {"Authorization": f"Bearer {tokens['access_token']}"}
    web.get(f"{base}/userinfo", params={"access_token": tokens["access_token"]})
    web.get(f"{base}/user/profile", params={"apikey": key})
    web.post(f"{base}/oauth/revoke", params={"token": tokens.get("refresh_token", "")})
    web.get(f"{base}/api/v2/users-by-email", params={"email": EMAIL}, headers=user)
    web.get(f"{base}/auth/user", params={"email": EMAIL}, headers=headers)

    # The verification link, opened; the reset link's token in a URL.
    asked = web.post(f"{base}/users/me/verify-email", headers=user)
    assert asked.status_code == 200, asked.text
    verify_token = _mailed_token(postmark, 1, VERIFY_LINK)
    web.get(f"{base}/verify-email", params={"token": verify_token})
    reset = web.post(
        f"{base}/auth/password-reset",
        json={"email": EMAIL, "host": HOST},
        headers={"X-Tenant-ID": tenant_id},
    )
    assert reset.json() == {"msg": "ok"}, reset.text
    reset_token = _mailed_token(postmark, 2, LINK)
    web.get(f"{base}/auth/password-reset/confirm", params={"token": reset_token})
    leaks += [verify_token, reset_token]
    # A page that links here sends its URL as the Referer.
    referer = f"{base}/verify-email?token={verify_token}&login_hint={quote(EMAIL)}"
    web.get(f"{base}/healthz", headers={"Referer": referer, "Cookie": f"gh_login={code}"})
    return [leak for leak in leaks if leak]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_gunicorn_access_logs_hold_no_credential_from_a_url(
    app: Flask,
    postmark: FakePostmark,
    celery_worker: Any,
    tmp_path: Path,
    log_format: str,
) -> None:
    """A real gunicorn serving the app, its access log on (LOG_FORMAT=json turns it on;
    in text the operator's `--access-logfile -`, here with a format that also prints the
    Referer, the Location and the credential headers); every line it wrote is scanned."""
    env = factories.process_env(
        app, LOG_FORMAT=log_format, LOGIN_COOKIE_SECURE="false", LOG_LEVEL="DEBUG"
    )
    args = ["--workers", "1"]
    if log_format == "text":
        args += ["--access-logfile", "-", "--access-logformat", TEXT_ACCESS_FORMAT]
    log = tmp_path / "gunicorn.log"
    with factories.gunicorn(env, log, *args) as base:
        leaks = _journeys_over_http(app, base, postmark)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    if log_format == "json":
        lines = [json.loads(line)["message"] for line in lines]  # every line is JSON
    access = [line for line in lines if "/verify-email?token=" in line]
    assert access and all("/verify-email?token=[redacted]" in line for line in access), access
    assert any("/logout?id_token_hint=[redacted]" in line for line in lines)
    assert any("login_hint=[redacted]" in line for line in lines)
    found = [
        (leak[:12] + "…", line)
        for line in lines
        for leak in leaks
        if leak in line or quote(leak, safe="") in line
    ]
    assert found == []


def test_the_development_server_log_holds_no_credential_from_a_url(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """`make run` serves with werkzeug, which logs each request line."""
    import requests

    caplog.set_level("INFO", logger="werkzeug")
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsb2xhIn0.c2lnbmF0dXJl"
    with factories.serve(app) as base:
        requests.get(
            f"{base}/verify-email",
            params={"token": "live-verification-token", "login_hint": "dev@example.com"},
        )
        requests.get(f"{base}/logout", params={"id_token_hint": jwt, "x": jwt})
    logged = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/verify-email?token=[redacted]&login_hint=[redacted]" in m for m in logged)
    text = "\n".join(logged)
    for leak in ("live-verification-token", "dev@example.com", "dev%40example.com", jwt):
        assert leak not in text


def test_worker_log_lines_are_written_once(
    deployment, postmark: FakePostmark, tmp_path: Path
) -> None:
    """Issue 22: every `app` line of `celery -A worker worker` appeared twice (our handler
    and Celery's root handler both printed it)."""
    import subprocess
    import sys

    variant = deployment(POSTMARK_API_URL=postmark.url)
    log = tmp_path / "worker.log"
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "--quiet", "worker"]
            + ["--pool", "solo", "--loglevel", "INFO"],
            cwd=factories.PROJECT_ROOT,
            env=factories.process_env(variant, POSTMARK_API_URL=postmark.url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert factories.wait_until(lambda: "ready." in log.read_text(), 60), log.read_text()
        tenant = factories.make_tenant(
            variant,
            "workerlogs",
            email_from="noreply@example.com",
            postmark_server_token="pm-worker-logs",
            password_reset_hosts=[HOST],
        )
        factories.make_user(variant, tenant.id, user_id="w1", email="w1@example.com")
        asked = variant.test_client().post(
            "/auth/password-reset",
            json={"email": "w1@example.com", "host": HOST},
            headers={"X-Tenant-ID": tenant.id},
        )
        assert asked.get_json() == {"msg": "ok"}
        [delivery] = factories.email_deliveries(variant, tenant.id)
        line = f"mail delivery {delivery.id}: sent"
        assert factories.wait_until(lambda: line in log.read_text(), 30), log.read_text()
        # The task's "succeeded" line comes after its own log line: all of it is written.
        assert factories.wait_until(lambda: "succeeded in" in log.read_text(), 30)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert log.read_text().count(line) == 1, log.read_text()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"GET /verify-email?token=abc.def HTTP/1.1"',
         '"GET /verify-email?token=[redacted] HTTP/1.1"'),
        ("/logout?id_token_hint=xyz&post_logout_redirect_uri=https%3A%2F%2Fa.b%2Fbye",
         "/logout?id_token_hint=[redacted]&post_logout_redirect_uri=https%3A%2F%2Fa.b%2Fbye"),
        ("/authorize?client_id=c1&login_hint=x&state=s&nonce=n&scope=openid",
         "/authorize?client_id=c1&login_hint=[redacted]&state=[redacted]&nonce=[redacted]&scope=openid"),
        ("/cb?code=c&device_code=d&user_code=u&Refresh_Token=r&client_secret=s",
         "/cb?code=[redacted]&device_code=[redacted]&user_code=[redacted]"
         "&Refresh_Token=[redacted]&client_secret=[redacted]"),
        ("/api/v1/users?cursor=abc&limit=5", "/api/v1/users?cursor=abc&limit=5"),
        ("/user/ada%40example.com/profile", "/user/[redacted]/profile"),
        ("sent to ada@example.com", "sent to [redacted]"),
        ("bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln done", "bearer [redacted] done"),
        ("key gh_05be970cae32e263_Rhwpa8zJabcdefgh used", "key [redacted] used"),
        ("GET /healthz 200", "GET /healthz 200"),
    ],
)  # fmt: skip
def test_redaction_by_parameter_name_and_by_shape(line: str, expected: str) -> None:
    from app.core.redact import redact_text

    assert redact_text(line) == expected
