"""Webhook deliveries with the real worker and a real receiver on loopback: every delivery
verified by the official `standardwebhooks` package, bodies as the issue names them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.conftest import ROOT_KEY
from tests.factories import TenantHandle
from tests.webhook_receiver import Receiver

ROOT = {"Authorization": f"Bearer {ROOT_KEY}"}


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture()
def hooked(app: Flask) -> TenantHandle:
    return factories.make_tenant(app, "hooked", scopes=["*"])


def register(client: FlaskClient, tenant: TenantHandle, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post(
        f"/tenants/{tenant.id}/webhooks", json={"url": url, **fields}, headers=ROOT
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def test_a_user_created_is_delivered_signed(
    app: Flask, client: FlaskClient, celery_worker: Any, hooked: TenantHandle, receiver: Receiver
) -> None:
    endpoint = register(client, hooked, receiver.url)
    assert endpoint["secret"].startswith("whsec_")
    assert set(endpoint) >= {"id", "url", "event_types", "enabled", "description", "secret"}
    response = client.post(
        "/api/v2/users",
        json={
            "connection": "Username-Password-Authentication",
            "user_id": "alice",
            "email": "alice@example.com",
            "password": "Correct-Horse-9",
        },
        headers={"Authorization": f"Bearer {hooked.key}"},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    factories.wait_until(lambda: receiver.requests())
    (payload,) = receiver.verified(endpoint["secret"])
    assert payload["type"] == "user.created"
    assert payload["data"]["user"]["user_id"] == "alice"
    assert payload["data"]["tenant"]["id"] == hooked.id
    messages = client.get(
        f"/tenants/{hooked.id}/webhooks/{endpoint['id']}/messages", headers=ROOT
    ).get_json()["items"]
    factories.wait_until(
        lambda: (
            client.get(
                f"/tenants/{hooked.id}/webhooks/{endpoint['id']}/messages", headers=ROOT
            ).get_json()["items"][0]["status"]
            == "delivered"
        )
    )
    assert messages[0]["id"] == receiver.requests()[0].webhook_id
