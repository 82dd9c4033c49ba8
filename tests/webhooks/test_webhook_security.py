"""Webhook targets that must never be contacted (SSRF): refused when an endpoint is
registered or changed, and again at every send after resolving the host anew, so a name
that resolved to a public address at registration and answers a private one later (DNS
rebinding) gets no request. Test names resolve in-process (FakeDns); the loopback guard
proves nothing in the process tried to connect beyond loopback during any of these tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests import factories
from tests.webhooks.support import PUBLIC_ADDRESS, FakeDns, LoopbackGuard, WebhookApi

pytestmark = pytest.mark.usefixtures("loopback_only")


@pytest.fixture()
def production_rules(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """What production enforces: https only, public addresses only."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_HTTP", False)


@pytest.mark.usefixtures("production_rules")
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://localhost/",  # the system resolver answers 127.0.0.1 (and ::1)
        "https://loopback.test/hook",  # a name that resolves to 127.0.0.1
        "https://10.0.0.5/",
        "https://192.168.1.1/",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fd00::1]/",
        "https://[fe80::1]/",
        "https://[::127.0.0.1]/",  # IPv4-compatible
        "https://[::ffff:0:a00:5]/",  # IPv4-translated
        "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "https://[64:ff9b:1::a00:5]/",  # local-use NAT64
        "https://[fec0::1]/",  # site-local
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://mixed.test/hook",  # one public and one private address
        "https://ula.test/hook",  # a unique local IPv6 address
        "http://public.test/hook",  # plain http
        "https://user:pass@public.test/hook",  # credentials in the URL
        "https://public.test/hook#frag",
        "ftp://public.test/hook",
        "https://nowhere.test/hook",  # does not resolve
    ],
)
def test_registration_refuses_a_private_or_malformed_target(
    webhooks: WebhookApi, dns: FakeDns, url: str
) -> None:
    dns.answers.update(
        {
            "public.test": [PUBLIC_ADDRESS],
            "loopback.test": ["127.0.0.1"],
            "mixed.test": [PUBLIC_ADDRESS, "10.1.2.3"],
            "ula.test": ["fd12:3456::1"],
        }
    )
    body = factories.assert_error(webhooks.create(url), 400, "invalid_webhook_url")
    assert "url" in body["message"]
    assert webhooks.listed() == []


@pytest.mark.usefixtures("production_rules")
def test_registration_accepts_a_public_https_target_without_contacting_it(
    webhooks: WebhookApi, dns: FakeDns, loopback_only: type[LoopbackGuard]
) -> None:
    dns.answers["hooks.example.test"] = [PUBLIC_ADDRESS, "2606:2800:220:1::1"]
    endpoint = webhooks.register("https://hooks.example.test/in?x=1")
    assert endpoint["url"] == "https://hooks.example.test/in?x=1"
    assert dns.asked == ["hooks.example.test"]  # checked by resolving it
    assert (PUBLIC_ADDRESS, 443) not in loopback_only.connects  # and never contacted
    webhooks.register("https://[64:ff9b::5db8:d822]/")  # NAT64 of a public address


def test_http_and_private_targets_are_allowed_by_the_settings(
    app: Flask, webhooks: WebhookApi, dns: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two rules are the settings' (an on-premise receiver), each on its own."""
    dns.answers["intranet.test"] = ["10.0.0.8"]
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", True)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_HTTP", False)
    webhooks.register("https://intranet.test/hook")
    factories.assert_error(webhooks.create("http://intranet.test/hook"), 400, "invalid_webhook_url")
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_HTTP", True)
    dns.answers["public.test"] = [PUBLIC_ADDRESS]
    webhooks.register("http://public.test/hook")
    factories.assert_error(webhooks.create("http://intranet.test/hook"), 400, "invalid_webhook_url")


@pytest.mark.usefixtures("production_rules")
def test_changing_the_url_to_a_private_target_is_refused(
    webhooks: WebhookApi, dns: FakeDns
) -> None:
    dns.answers.update({"public.test": [PUBLIC_ADDRESS], "inside.test": ["172.16.0.9"]})
    endpoint = webhooks.register("https://public.test/hook")
    for url in ("https://inside.test/hook", "https://169.254.169.254/", "http://public.test/"):
        response = webhooks.patch(endpoint["id"], url=url)
        factories.assert_error(response, 400, "invalid_webhook_url")
    assert webhooks.get(endpoint["id"])["url"] == "https://public.test/hook"


@pytest.mark.parametrize(
    ("template", "rebound", "allow_http"),
    [
        # The receiver's own port: were the check skipped, it would get the POST.
        ("http://rebind.test:{port}/hook", "127.0.0.1", True),
        ("https://rebind.test/hook", "10.0.0.7", False),
        ("https://rebind.test/hook", "169.254.169.254", False),
    ],
)
def test_a_name_rebound_to_a_private_address_is_refused_at_send_time(
    app: Flask,
    webhooks: WebhookApi,
    dns: FakeDns,
    receivers: Any,
    celery_worker: Any,
    loopback_only: type[LoopbackGuard],
    monkeypatch: pytest.MonkeyPatch,
    template: str,
    rebound: str,
    allow_http: bool,
) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_HTTP", allow_http)
    receiver = receivers()
    dns.answers["rebind.test"] = [PUBLIC_ADDRESS]
    endpoint = webhooks.register(template.format(port=receiver.port))
    dns.answers["rebind.test"] = [rebound]  # the name's owner changes its answer
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, lambda m: m["attempts"] >= 1)
    assert message["status"] == "pending"  # refused like any failure: retried later
    assert message["last_status_code"] is None
    assert message["last_error"].startswith("refused: ")
    assert "private" in message["last_error"]
    assert receiver.requests() == []
    contacted = set(loopback_only.connects)
    assert ("127.0.0.1", receiver.port) not in contacted
    assert (rebound, receiver.port) not in contacted and (rebound, 443) not in contacted


def test_a_disabled_private_target_setting_also_holds_for_messages_already_queued(
    app: Flask,
    webhooks: WebhookApi,
    receivers: Any,
    celery_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An endpoint registered while private targets were allowed is not contacted once a
    deployment forbids them: the rule is applied at every send, not only at registration."""
    receiver = receivers()
    endpoint = webhooks.register(receiver.url)  # http://127.0.0.1:…, allowed in testing
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, lambda m: m["attempts"] >= 1)
    assert message["last_error"].startswith("refused: ")
    assert receiver.requests() == []
