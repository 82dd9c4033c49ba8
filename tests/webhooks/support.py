"""Helpers of the webhook delivery and security tests: the platform's webhook routes as
calls, a resolver that answers test names without any DNS traffic, and a guard that records
(and stops) every connection that would leave loopback.

The guard is an audit hook (`sys.addaudithook`): hooks cannot be removed, so one is
installed once per process and checks a module-level switch; `LoopbackGuard.on()` turns it
on for a test and `off()` returns what it caught.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.webhooks import events
from tests import factories
from tests.conftest import ROOT_KEY
from tests.factories import TenantHandle

ROOT = {"Authorization": f"Bearer {ROOT_KEY}"}
PUBLIC_ADDRESS = "93.184.216.34"  # never contacted: every test name resolves in-process


@dataclass
class WebhookApi:
    """One tenant's webhook routes, called with the root key."""

    client: FlaskClient
    tenant: TenantHandle

    @property
    def base(self) -> str:
        return f"/tenants/{self.tenant.id}/webhooks"

    def create(self, url: str, **fields: Any) -> Any:
        return self.client.post(self.base, json={"url": url, **fields}, headers=ROOT)

    def register(self, url: str, **fields: Any) -> dict[str, Any]:
        response = self.create(url, **fields)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()

    def patch(self, endpoint_id: str, **fields: Any) -> Any:
        return self.client.patch(f"{self.base}/{endpoint_id}", json=fields, headers=ROOT)

    def get(self, endpoint_id: str) -> dict[str, Any]:
        response = self.client.get(f"{self.base}/{endpoint_id}", headers=ROOT)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def listed(self) -> list[dict[str, Any]]:
        response = self.client.get(self.base, headers=ROOT)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def send_test(self, endpoint_id: str) -> str:
        """Queue a `webhook.test` message; its id (the `webhook-id` it is sent with)."""
        response = self.client.post(f"{self.base}/{endpoint_id}/test", headers=ROOT)
        assert response.status_code == 202, response.get_data(as_text=True)
        return response.get_json()["id"]

    def messages(self, endpoint_id: str, **query: str) -> list[dict[str, Any]]:
        response = self.client.get(
            f"{self.base}/{endpoint_id}/messages", query_string=query, headers=ROOT
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["items"]

    def message(self, endpoint_id: str, message_id: str) -> dict[str, Any]:
        (found,) = [m for m in self.messages(endpoint_id) if m["id"] == message_id]
        return found

    def wait_message(
        self,
        endpoint_id: str,
        message_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The message once `predicate` holds for it (its last state if it never does)."""
        last: dict[str, Any] = {}

        def check() -> bool:
            last.update(self.message(endpoint_id, message_id))
            return predicate(last)

        factories.wait_until(check, timeout=timeout)
        assert predicate(last), last
        return last


def quiet_message(app: Flask, tenant_id: str, endpoint_id: str) -> str:
    """A due pending message written by the real writer but not queued (the session passed
    is not `db.session`, so no delivery task follows): as if its queueing had been lost."""
    with app.app_context(), tenant_scope(tenant_id):
        (message_id,) = events.write_messages(
            [endpoint_id], events.TEST_EVENT, events.test_body(), session=db.session()
        )
        db.session.commit()
        return message_id


def shift(app: Flask, table: str, column: str, row_id: str, seconds: float) -> int:
    """Move a timestamp of one row `seconds` into the past (a row whose time passed); the
    number of rows whose column was set."""
    with app.app_context():
        changed = db.session.execute(
            text(
                f"UPDATE {table} SET {column} = {column} - make_interval(secs => :s) "
                f"WHERE id = :id AND {column} IS NOT NULL"
            ),
            {"s": seconds, "id": row_id},
        ).rowcount
        db.session.commit()
        return changed


@dataclass
class FakeDns:
    """`socket.getaddrinfo` for tests: names in `answers` resolve to the given addresses,
    IP literals and `localhost` resolve as usual (no DNS needed for those), and any other
    name does not resolve, so no query ever leaves the machine."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    real: Callable[..., Any] = socket.getaddrinfo

    def __call__(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name in self.answers:
            self.asked.append(name)
            return [_info(address, port) for address in self.answers[name]]
        if name is None or name == "localhost" or _is_literal(name):
            return self.real(host, port, family, type, proto, flags)
        raise socket.gaierror(socket.EAI_NONAME, f"{name} is not a test name")


def _info(address: str, port: Any) -> tuple[Any, ...]:
    port = int(port or 0)
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


def _is_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


class LoopbackGuard:
    """Records every `socket.connect` made while on, in any thread of the process (the
    worker is a thread here), and refuses those to a non-loopback address."""

    _installed = False
    _lock = threading.Lock()
    active = False
    connects: list[tuple[str, int]] = []
    outside: list[Any] = []

    @classmethod
    def on(cls) -> None:
        with cls._lock:
            if not cls._installed:
                sys.addaudithook(cls._hook)
                cls._installed = True
            cls.connects, cls.outside = [], []
            cls.active = True

    @classmethod
    def off(cls) -> list[Any]:
        cls.active = False
        return list(cls.outside)

    @classmethod
    def _hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if event != "socket.connect" or not cls.active:
            return
        address = args[1]
        if not isinstance(address, tuple):
            return  # a Unix socket: stays on this machine
        host, port = str(address[0]), int(address[1])
        cls.connects.append((host, port))
        if not (_is_literal(host) and ipaddress.ip_address(host.split("%", 1)[0]).is_loopback):
            cls.outside.append(address)
            raise PermissionError(f"test guard: connection to {address!r} refused")


def register(client: FlaskClient, tenant_id: str, url: str, **fields: Any) -> dict[str, Any]:
    """Register an endpoint with the root key; the create answer (secret included)."""
    response = client.post(
        f"/tenants/{tenant_id}/webhooks", json={"url": url, **fields}, headers=ROOT
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()
