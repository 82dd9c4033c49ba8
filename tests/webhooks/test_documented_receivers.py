"""The receiver docs/webhooks.md shows (the README links to it) is run as written (only the
secret filled in), against real deliveries: a delivery they verify is answered 204 and ends
`delivered`; one signed with another secret is refused with 400."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests import factories
from tests.conftest import ROOT_KEY

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": f"Bearer {ROOT_KEY}"}


def _receiver_code(document: Path) -> str:
    blocks = re.findall(r"```python\n(.*?)```", document.read_text(), re.S)
    (code,) = [block for block in blocks if "standardwebhooks" in block]
    return code


@pytest.fixture(params=["docs/webhooks.md"])
def documented(request: pytest.FixtureRequest) -> str:
    return _receiver_code(ROOT / request.param)


def _serve(receiver: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, receiver, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/gatehouse"
    finally:
        server.shutdown()


def _status(client: FlaskClient, tenant_id: str, endpoint_id: str) -> dict[str, Any]:
    path = f"/tenants/{tenant_id}/webhooks/{endpoint_id}/messages"
    items = client.get(path, headers=ADMIN).get_json()["items"]
    return items[0] if items else {}


def test_the_documented_receiver_verifies_deliveries(
    app: Flask,
    client: FlaskClient,
    celery_worker: Any,
    documented: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = factories.make_tenant(app, "documented")
    created = client.post(
        f"/tenants/{tenant.id}/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=ADMIN
    ).get_json()
    namespace: dict[str, Any] = {"__name__": "documented_receiver"}
    exec(documented.replace("whsec_…", created["secret"]), namespace)  # noqa: S102
    for url in _serve(namespace["app"]):
        endpoint = client.patch(
            f"/tenants/{tenant.id}/webhooks/{created['id']}", json={"url": url}, headers=ADMIN
        )
        assert endpoint.status_code == 200
        sent = client.post(f"/tenants/{tenant.id}/webhooks/{created['id']}/test", headers=ADMIN)
        assert sent.status_code == 202
        message = factories.wait_until(
            lambda: (
                _status(client, tenant.id, created["id"]).get("status") == "delivered"
                and _status(client, tenant.id, created["id"])
            )
        )
        assert message["last_status_code"] == 204

        # The same receiver refuses what another secret signed: a rotation with no grace
        # period leaves only the new secret signing.
        monkeypatch.setitem(app.config, "WEBHOOK_SECRET_GRACE_SECONDS", 0)
        client.post(f"/tenants/{tenant.id}/webhooks/{created['id']}/rotate-secret", headers=ADMIN)
        client.post(f"/tenants/{tenant.id}/webhooks/{created['id']}/test", headers=ADMIN)
        assert factories.wait_until(
            lambda: _status(client, tenant.id, created["id"]).get("last_status_code") == 400
        )
