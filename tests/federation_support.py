"""Helpers of the federation tests (issue 27): a real upstream OpenID provider (panva's
oidc-provider in tests/idp, started by node), connections made as rows (the Connections
API is another branch's), and the upstream sign-in driven over HTTP with requests."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests
from flask import Flask

from app.connections.models import Connection
from app.connections.secrets import set_client_secret
from app.core import security
from app.core.db import db
from app.core.tenancy import tenant_scope
from tests.oauth_support import form_fields

IDP_DIR = Path(__file__).resolve().parent / "idp"
CLIENT_ID = "gatehouse"
CLIENT_SECRET = "gatehouse-test-secret"
CALLBACK = "http://gatehouse.test/login/callback"


@dataclass
class Idp:
    """The running provider: its issuer, and its test hooks (see tests/idp/server.js)."""

    issuer: str

    def account(self, account_id: str, **claims: Any) -> None:
        """The claims `account_id` shows when it signs in (email, email_verified…)."""
        requests.put(f"{self.issuer}/__test/accounts/{account_id}", json=claims, timeout=5)

    def mode(self, mode: str) -> None:
        """How the next token responses misbehave ("" for none)."""
        requests.put(f"{self.issuer}/__test/mode", json={"mode": mode}, timeout=5)

    def reset(self) -> None:
        requests.post(f"{self.issuer}/__test/reset", json={}, timeout=5)


def _install() -> None:
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install the test identity provider (tests/idp)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=IDP_DIR, check=True)


@contextmanager
def running_idp(redirect_uris: tuple[str, ...] = (CALLBACK,)) -> Iterator[Idp]:
    """Start tests/idp/server.js on a free loopback port (installing it first when a
    fresh clone has no node_modules), its client registered with `redirect_uris`; stop
    it after."""
    _install()
    node = shutil.which("node")
    assert node, "node is needed to run the test identity provider (tests/idp)"
    process = subprocess.Popen(
        [node, str(IDP_DIR / "server.js")],
        env={
            "PATH": "/usr/bin:/bin",
            "IDP_CLIENT_ID": CLIENT_ID,
            "IDP_CLIENT_SECRET": CLIENT_SECRET,
            "IDP_REDIRECT_URIS": ",".join(redirect_uris),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        found: list[str] = []

        def read() -> None:
            for line in process.stdout:  # type: ignore[union-attr]
                if line.startswith("LISTENING "):
                    found.append(line.split()[1])
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(20)
        assert found, "the test identity provider did not start"
        yield Idp(found[0])
    finally:
        process.terminate()
        process.wait(10)


def make_connection(
    app: Flask,
    tenant_id: str,
    *,
    client_id: str,
    name: str = "corp-idp",
    strategy: str = "oidc",
    secret: str = CLIENT_SECRET,
    **options: Any,
) -> str:
    """A connection row serving the app `client_id` (options on top of client_id); its id."""
    with app.app_context(), tenant_scope(tenant_id):
        connection = Connection(
            id="con_" + security.random_token(12).replace("-", "x").replace("_", "y"),
            name=name,
            strategy=strategy,
            display_name=f"{name} login",
            options={"client_id": CLIENT_ID, **options},
            enabled_clients=[client_id],
        )
        db.session.add(connection)
        db.session.flush()
        set_client_secret(connection, secret)
        db.session.commit()
        return connection.id


_FORM = re.compile(r"<form[^>]*action=\"([^\"]*)\"[^>]*>(.*?)</form>", re.S)


def upstream_sign_in(location: str, login: str) -> str:
    """Sign in at the provider as `login` from its authorization URL `location` (a fresh
    browser: requests.Session keeps its cookies); the URL it sends the browser back to."""
    browser = requests.Session()
    url = location
    for _ in range(10):
        response = browser.get(url, allow_redirects=False, timeout=10)
        while response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            if not url.startswith("http://127.0.0.1"):
                return url
            response = browser.get(url, allow_redirects=False, timeout=10)
        form = _FORM.search(response.text)
        assert form, response.text[:500]
        fields = form_fields(form.group(0))
        fields.update(login=login, password="any")
        response = browser.post(
            urljoin(url, unescape(form.group(1))), data=fields, allow_redirects=False, timeout=10
        )
        assert response.is_redirect, response.text[:500]
        url = urljoin(url, response.headers["Location"])
        if not url.startswith("http://127.0.0.1"):
            return url
    raise AssertionError("the provider's sign-in did not come back")
