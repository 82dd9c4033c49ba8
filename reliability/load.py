"""Mixed traffic for the soak: reads, sign-ins, refreshes, secret writes and reads, reset
requests, in fixed proportions. It remembers every write the service acknowledged, so
the end of the run can read each one back, and every answer it got, for the figures.
"""

from __future__ import annotations

import collections
import random
import secrets
import statistics
import threading
import time
from dataclasses import dataclass, field

from reliability.client import Answer, open_loop, percentile
from reliability.deployment import Deployment

# kind -> weight (per 100 requests)
MIX = {
    "profile": 30,
    "me": 14,
    "key_read": 10,
    "secret_create": 12,
    "secret_update": 6,
    "secret_read": 10,
    "refresh": 8,
    "sign_in": 5,
    "reset": 5,
}
EXPECTED = {"secret_create": 201}  # every other kind answers 200


@dataclass
class UserState:
    uid: str
    email: str
    access: str
    refresh: str
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class SecretState:
    uid: str
    secret_id: str
    value: str
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Outcome:
    kind: str
    status: int
    seconds: float  # from sending to the whole answer


class Traffic:
    """The soak's client: one call of `one()` sends one request of the mix."""

    def __init__(self, deploy: Deployment, users: list[UserState]) -> None:
        self.deploy = deploy
        self.users = users
        self.secrets: list[SecretState] = []
        self.lock = threading.Lock()
        self.outcomes: list[Outcome] = []
        self.unexpected: list[tuple[str, Answer]] = []
        self.logins: collections.Counter[str] = collections.Counter()
        self.resets: collections.Counter[str] = collections.Counter()
        self.mismatched_reads = 0
        self._kinds = [kind for kind, weight in MIX.items() for _ in range(weight)]
        self._serial = 0

    # bookkeeping ------------------------------------------------------------------------

    def _record(self, kind: str, answer: Answer) -> bool:
        ok = answer.status == EXPECTED.get(kind, 200)
        with self.lock:
            self.outcomes.append(Outcome(kind, answer.status, answer.seconds))
            if not ok:
                self.unexpected.append((kind, answer))
        return ok

    def _next_name(self) -> str:
        with self.lock:
            self._serial += 1
            return f"soak-{self._serial}"

    # the requests -----------------------------------------------------------------------

    def one(self) -> None:
        kind = random.choice(self._kinds)
        getattr(self, f"_{kind}")()

    def _bearer(self, user: UserState) -> dict[str, str]:
        return {"Authorization": f"Bearer {user.access}"}

    def _profile(self) -> None:
        user = random.choice(self.users)
        answer = self.deploy.http("GET", "/user/profile", headers=self._bearer(user))
        self._record("profile", answer)

    def _me(self) -> None:
        user = random.choice(self.users)
        self._record("me", self.deploy.http("GET", "/users/me", headers=self._bearer(user)))

    def _key_read(self) -> None:
        user = random.choice(self.users)
        answer = self.deploy.http("GET", f"/user/{user.uid}", headers=self.deploy.key_headers)
        self._record("key_read", answer)

    def _secret_create(self) -> None:
        user = random.choice(self.users)
        value = secrets.token_urlsafe(24)
        answer = self.deploy.http(
            "POST",
            f"/user/{user.uid}/secrets",
            headers=self._bearer(user),
            json_body={"name": self._next_name(), "value": value},
        )
        if self._record("secret_create", answer):
            with self.lock:
                self.secrets.append(SecretState(user.uid, answer.json()["id"], value))

    def _some_secret(self) -> SecretState | None:
        """An acknowledged secret nobody else is using now (its lock taken), or None."""
        with self.lock:
            if not self.secrets:
                return None
            secret = random.choice(self.secrets)
        return secret if secret.lock.acquire(blocking=False) else None

    def _secret_update(self) -> None:
        secret = self._some_secret()
        if secret is None:
            return self._profile()
        try:
            value = secrets.token_urlsafe(24)
            user = next(u for u in self.users if u.uid == secret.uid)
            answer = self.deploy.http(
                "PUT",
                f"/user/{secret.uid}/secrets/{secret.secret_id}",
                headers=self._bearer(user),
                json_body={"value": value},
            )
            if self._record("secret_update", answer):
                secret.value = value
        finally:
            secret.lock.release()

    def _secret_read(self) -> None:
        secret = self._some_secret()
        if secret is None:
            return self._profile()
        try:
            answer = self.deploy.http(
                "GET",
                f"/user/{secret.uid}/secrets/{secret.secret_id}/value",
                headers=self.deploy.key_headers,
            )
            if self._record("secret_read", answer) and answer.text != secret.value:
                with self.lock:
                    self.mismatched_reads += 1
        finally:
            secret.lock.release()

    def _refresh(self) -> None:
        user = random.choice(self.users)
        if not user.lock.acquire(blocking=False):
            return self._profile()
        try:
            answer = self.deploy.refresh(user.refresh)
            if self._record("refresh", answer):
                tokens = answer.json()
                user.access, user.refresh = tokens["access_token"], tokens["refresh_token"]
        finally:
            user.lock.release()

    def _sign_in(self) -> None:
        user = random.choice(self.users)
        if self._record("sign_in", self.deploy.sign_in(user.email)):
            with self.lock:
                self.logins[user.uid] += 1

    def _reset(self) -> None:
        user = random.choice(self.users)
        answer = self.deploy.request_reset(user.email)
        if self._record("reset", answer) and answer.json() == {"msg": "ok"}:
            with self.lock:
                self.resets[user.email] += 1

    # drivers ----------------------------------------------------------------------------

    def closed_loop(self, threads: int, seconds: float) -> float:
        """As fast as `threads` clients go: completed requests per second."""
        deadline = time.monotonic() + seconds
        before = len(self.outcomes)

        def client() -> None:
            while time.monotonic() < deadline:
                self.one()

        workers = [threading.Thread(target=client) for _ in range(threads)]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return (len(self.outcomes) - before) / (time.monotonic() - started)

    def open_loop(self, rate: float, seconds: float, in_flight: int = 32) -> tuple[float, int]:
        """The mix at `rate` requests per second for `seconds` (reliability.client.open_loop):
        the rate achieved and how many requests were dropped from the schedule."""
        return open_loop(self.one, rate, seconds, in_flight)


def summary(outcomes: list[Outcome]) -> dict[str, float]:
    seconds = [o.seconds for o in outcomes]
    return {
        "requests": len(outcomes),
        "p50_ms": statistics.median(seconds) * 1000 if seconds else 0.0,
        "p99_ms": percentile(seconds, 0.99) * 1000,
        "server_errors": sum(1 for o in outcomes if o.status >= 500),
        "no_answer": sum(1 for o in outcomes if o.status == 0),
    }
