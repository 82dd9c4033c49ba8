"""A tenant's delivery health on the platform surface: mail deliveries and webhook messages
(real worker, loopback receivers, the fake Postmark) counted by status over the last day
and the last 30 days; who may read it; another tenant's rows never counted, another
tenant's path 404."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import PASSWORD, TenantHandle, assert_error
from tests.postmark_fake import FakePostmark
from tests.webhooks.support import ROOT, WebhookApi

HOST = "app.example.com"


def _path(tenant_id: str) -> str:
    return f"/tenants/{tenant_id}/delivery-health"


def _health(client: FlaskClient, tenant_id: str) -> dict[str, Any]:
    answer = client.get(_path(tenant_id), headers=ROOT)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


@pytest.mark.usefixtures("loopback_only", "celery_worker")
def test_counts_the_tenants_deliveries_by_status(
    app: Flask,
    client: FlaskClient,
    webhooks: WebhookApi,
    receivers: Any,
    postmark: FakePostmark,
    other_tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_RETRY_SCHEDULE", [])  # one attempt, then failed
    good, bad = receivers(), receivers()
    bad.default_status = 500
    done = lambda message: message["status"] != "pending"  # noqa: E731
    for receiver, status in ((good, "delivered"), (bad, "failed")):
        endpoint = webhooks.register(receiver.url)
        message_id = webhooks.send_test(endpoint["id"])
        assert webhooks.wait_message(endpoint["id"], message_id, done)["status"] == status
    tenant = webhooks.tenant
    patched = client.patch(
        f"/tenants/{tenant.id}",
        json={
            "settings": {
                "postmark_server_token": "pm",
                "email_from": "no@example.com",
                "password_reset_hosts": [HOST],
            }
        },
        headers=ROOT,
    )
    assert patched.status_code == 200
    factories.make_user(app, tenant.id, username="joe", email="joe@example.com", password=PASSWORD)
    asked = client.post(
        "/auth/password-reset",
        json={"host": HOST, "username": "joe"},
        headers={"X-Tenant-ID": tenant.id},
    )
    assert asked.status_code == 200
    factories.wait_until(lambda: _health(client, tenant.id)["mail"]["last_24h"]["sent"] == 1)

    body = _health(client, tenant.id)

    for window in ("last_24h", "last_30d"):
        assert body["mail"][window] == {"queued": 0, "sending": 0, "sent": 1, "failed": 0}
        assert body["webhooks"][window] == {"pending": 0, "delivered": 1, "failed": 1}
    assert len(postmark.mails()) == 1
    elsewhere = _health(client, other_tenant.id)
    assert sum(elsewhere["mail"]["last_30d"].values()) == 0
    assert sum(elsewhere["webhooks"]["last_30d"].values()) == 0


def test_who_may_read_it(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    for scopes in (["read:audit"], ["manage:webhooks"]):
        key = {"X-APIKEY": factories.make_key(app, tenant.id, scopes)}
        assert client.get(_path(tenant.id), headers=key).status_code == 200
    narrow = {"X-APIKEY": factories.make_key(app, tenant.id, ["read:users"])}
    assert_error(client.get(_path(tenant.id), headers=narrow), 403, "insufficient_scope")
    assert_error(
        client.get(_path(tenant.id), headers=other_tenant.headers), 404, "tenant_not_found"
    )
    assert client.get(_path(tenant.id), headers=ROOT).status_code == 200
    assert_error(client.get(_path("0" * 32), headers=ROOT), 404, "tenant_not_found")
    assert_error(client.get(_path(tenant.id)), 401, "missing_credentials")
