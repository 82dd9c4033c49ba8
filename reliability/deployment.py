"""One deployment under test: its settings, its processes, and the calls a client makes.

Settings are the environment variables of `config.py`, with the periodic jobs and retry
delays shortened so that recovery shows within seconds instead of minutes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from reliability import stack
from reliability.client import Answer, call
from reliability.stack import Postgres, Redis, Service
from tests.postmark_fake import FakePostmark

PASSWORD = "reliability-password-1"

# Short periods so a scenario sees recovery quickly; every one is a documented setting.
FAST_SETTINGS = {
    "MAIL_RETRY_BASE_SECONDS": "1",
    "MAIL_TIMEOUT_SECONDS": "3",
    "MAIL_REQUEUE_AFTER_SECONDS": "2",
    "MAIL_REQUEUE_INTERVAL_SECONDS": "1",
    "MAIL_SENDING_LEASE_SECONDS": "8",
    "ACTIVITY_FLUSH_INTERVAL_SECONDS": "1",
    "REFRESH_REUSE_GRACE_SECONDS": "2",
}

# For scenarios that send far more traffic from one address than a client would: the
# limits stay on (the code path is the same), only the numbers are out of the way.
HIGH_LIMITS = {
    "RATELIMIT_SIGNIN_PER_ACCOUNT": "100000 per minute",
    "RATELIMIT_SIGNIN_PER_IP": "100000 per minute",
    "RATELIMIT_REFRESH_PER_IP": "100000 per minute",
    "RATELIMIT_RESET_PER_ADDRESS": "100000 per hour",
    "RATELIMIT_RESET_PER_IP": "100000 per hour",
}


@dataclass
class Deployment:
    folder: Path
    database_url: str
    redis: Redis
    postgres: Postgres
    postmark: FakePostmark
    env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    apis: list[Service] = field(default_factory=list)
    tenant_id: str = ""
    key: str = ""

    def configure(self, **settings: str) -> None:
        """Write the environment, migrate the database and make a tenant with an API key."""
        self.env = stack.app_environment(
            database_url=self.database_url,
            redis_url=self.redis.url,
            folder=self.folder,
            POSTMARK_API_URL=self.postmark.url,
            **{**FAST_SETTINGS, **settings},
        )
        stack.flask(self.env, "db", "upgrade")
        self.tenant_id = stack.flask(self.env, "tenants", "create", "reliability").strip()
        created = stack.flask(self.env, "keys", "create", self.tenant_id)
        self.key = re.search(r"key: (\S+)", created).group(1)  # type: ignore[union-attr]

    # processes -------------------------------------------------------------------------

    def start_api(self, workers: int = 2, name: str | None = None) -> Service:
        api = stack.api_server(self.env, self.folder, name or f"api{len(self.apis) + 1}", workers)
        self.services.append(api)
        self.apis.append(api)
        stack.wait_until(
            lambda: call(api.extra["base"], "GET", "/healthz", timeout=2).status == 200,
            30,
            f"{api.name} /healthz",
        )
        return api

    def start_worker(self, name: str = "worker") -> Service:
        worker = stack.celery_worker(self.env, self.folder, name)
        self.services.append(worker)
        stack.wait_until(lambda: "ready." in worker.output(), 60, f"celery {name}")
        return worker

    def start_beat(self) -> Service:
        beat = stack.celery_beat(self.env, self.folder)
        self.services.append(beat)
        stack.wait_until(lambda: "beat: Starting" in beat.output(), 30, "celery beat")
        return beat

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def log_tail(self, service: Service, lines: int = 60) -> str:
        return stack.tail(service.log, lines)

    def logs(self) -> str:
        return "\n".join(service.output() for service in self.services)

    # client calls ----------------------------------------------------------------------

    def http(self, method: str, path: str, *, api: int = 0, **kwargs: Any) -> Answer:
        return call(self.apis[api].extra["base"], method, path, **kwargs)

    @property
    def key_headers(self) -> dict[str, str]:
        return {"X-APIKEY": self.key, "X-Tenant-ID": self.tenant_id}

    def create_user(self, uid: str, *, admin: bool = False, api: int = 0) -> str:
        """A user with `uid`@example.com as email and the common password; its email."""
        email = f"{uid}@example.com"
        answer = self.http(
            "POST",
            "/auth/user",
            api=api,
            headers=self.key_headers,
            json_body={"uid": uid, "email": email, "password": PASSWORD},
        )
        assert answer.status in (200, 201), answer
        if admin:
            patched = self.http(
                "PATCH",
                f"/user/{uid}",
                api=api,
                headers=self.key_headers,
                json_body={"permissions_group": "admin"},
            )
            assert patched.status == 200, patched
        return email

    def sign_in(self, username: str, *, api: int = 0, password: str = PASSWORD) -> Answer:
        return self.http(
            "POST",
            "/oauth/token",
            api=api,
            headers={"X-Tenant-ID": self.tenant_id},
            form={"grant_type": "password", "username": username, "password": password},
        )

    def refresh(self, refresh_token: str, *, api: int = 0) -> Answer:
        return self.http(
            "POST",
            "/oauth/token",
            api=api,
            form={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )

    def request_reset(self, email: str, *, api: int = 0) -> Answer:
        return self.http(
            "POST",
            "/auth/password-reset",
            api=api,
            headers={"X-Tenant-ID": self.tenant_id},
            json_body={"email": email, "host": "app.example.com"},
        )

    def allow_reset_host(self) -> None:
        answer = call(
            self.apis[0].extra["base"],
            "PATCH",
            f"/tenants/{self.tenant_id}",
            headers={"X-APIKEY": self.env["ROOT_API_KEY"]},
            json_body={"settings": {"password_reset_hosts": ["app.example.com"]}},
        )
        assert answer.status == 200, answer

    # the database, read directly to count outcomes -----------------------------------

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())

    def wait_for(self, check: Any, timeout: float, what: str) -> Any:
        return stack.wait_until(check, timeout, what, interval=0.2)

    def deliveries(self) -> dict[str, int]:
        """Delivery rows by status."""
        return dict(self.query("SELECT status, count(*) FROM email_delivery GROUP BY status"))


def seconds_since(started: float) -> float:
    return time.monotonic() - started
