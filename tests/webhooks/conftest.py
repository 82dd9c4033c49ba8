"""Fixtures of the webhook tests: loopback receivers, a tenant with its webhook routes, a
resolver for test names, and the loopback guard (asked for by the modules that send)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.webhook_receiver import Receiver
from tests.webhooks.support import FakeDns, LoopbackGuard, WebhookApi


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    """One loopback receiver, stopped after the test."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture()
def receivers() -> Iterator[Callable[[], Receiver]]:
    """`make()` starts one more loopback receiver; all are stopped after the test."""
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver().start())
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.fixture()
def webhooks(app: Flask, client: FlaskClient) -> WebhookApi:
    return WebhookApi(client, factories.make_tenant(app, "hooked", scopes=["*"]))


@pytest.fixture()
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    """Test names resolve as `dns.answers` says; nothing goes to a real resolver."""
    fake = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture()
def loopback_only() -> Iterator[type[LoopbackGuard]]:
    """Fail the test if anything in the process tried to connect beyond loopback."""
    LoopbackGuard.on()
    yield LoopbackGuard
    outside = LoopbackGuard.off()
    assert outside == [], f"connections beyond loopback were attempted: {outside}"
