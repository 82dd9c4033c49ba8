"""`make run PORT=…` serves tokens and discovery for the port it serves (issue 17,
finding 4: they named :5000, so Authlib followed discovery to the wrong port and the
README's PyJWT snippet failed with InvalidIssuerError)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import jwt

from tests.factories import PROJECT_ROOT

SETTINGS_OF_THE_TEST_RUN = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "ISSUER", "APP_ENV")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, **kwargs) -> dict:
    request = urllib.request.Request(url, **kwargs)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_make_run_issues_for_the_port_it_serves(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_OF_THE_TEST_RUN}
    env["INSTANCE_PATH"] = str(tmp_path)  # embedded defaults: SQLite and secrets in there
    # -o install-runtime: the test run's venv already has the requirements.
    server = subprocess.Popen(
        ["make", "-s", "-o", "install-runtime", "run", f"PORT={port}"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # make, flask and its reloader-free server in one group
    )
    try:
        deadline, discovery = time.monotonic() + 60, None
        while discovery is None and time.monotonic() < deadline and server.poll() is None:
            try:
                discovery = _get(f"{base}/.well-known/openid-configuration")
            except OSError:
                time.sleep(0.3)  # migrating, bootstrapping or not listening yet
        assert discovery is not None, "make run did not serve"
        assert discovery["issuer"] == base
        assert discovery["jwks_uri"] == f"{base}/.well-known/jwks.json"
        assert discovery["token_endpoint"] == f"{base}/oauth/token"

        demo = json.loads((tmp_path / "bootstrap.json").read_text())
        body = f"grant_type=client_credentials&client_secret={demo['api_key']}".encode()
        token = _get(f"{base}/oauth/token", data=body, method="POST")["access_token"]
        # The README's PyJWT snippet, with the issuer discovery names.
        key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token, key, algorithms=["RS256"], audience=demo["tenant_id"], issuer=base
        )
        assert claims["iss"] == base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
