"""A local webhook receiver (loopback only) for tests, the reliability run and the bench:
it records every request (headers and the exact body) and answers as told: a status per
request (`answer_with(500, 500)`), a redirect, a slow answer, or a refused connection
(`stop()`, then `start()` again on the same port).

Deliveries are verified the way a real receiver would, with the official
`standardwebhooks` package (`verified(secret)`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    answers: deque[int] = field(default_factory=deque)
    default_status: int = 204
    delay_seconds: float = 0.0
    redirect_to: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.time(),
                        )
                    )
                    status = receiver.answers.popleft() if receiver.answers else None
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                if receiver.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", receiver.redirect_to)
                    self.end_headers()
                    return
                self.send_response(status or receiver.default_status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer_with(self, *statuses: int) -> None:
        with self.lock:
            self.answers.extend(statuses)

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def verified(self, *secrets: str) -> list[dict[str, Any]]:
        """Every request's payload, each verified with `standardwebhooks` by at least one of
        `secrets` (raises WebhookVerificationError otherwise)."""
        payloads = []
        for request in self.requests():
            payloads.append(verify(request, *secrets))
        return payloads


def verify(request: Received, *secrets: str) -> dict[str, Any]:
    """The payload of one request, verified with one of `secrets` by `standardwebhooks`."""
    errors = []
    for secret in secrets:
        try:
            return Webhook(secret).verify(request.body, request.headers)
        except Exception as exc:  # the package's WebhookVerificationError
            errors.append(exc)
    raise errors[0]
