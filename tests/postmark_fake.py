"""A local HTTP server that speaks Postmark's `POST /email` API, for postmarker to talk to.

Tests program its answers (`answer_with(500, 500, 200)`) and read what it received. It can
also hold requests open (`hold()` … `release()`) to make a window in which the sender
dies: a held request whose sender has hung up is recorded as abandoned, not accepted, as a
provider that never got to answer would have taken nothing.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ReceivedMail:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakePostmark:
    server: ThreadingHTTPServer
    received: list[ReceivedMail] = field(default_factory=list)
    answers: deque[int] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set while requests flow freely; cleared by hold().
    released: threading.Event = field(default_factory=threading.Event)
    held: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    abandoned: list[ReceivedMail] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.released.set()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def answer_with(self, *statuses: int) -> None:
        """The next requests get these statuses, in order; then 200 again."""
        with self.lock:
            self.answers.extend(statuses)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.answers.clear()
            self.abandoned.clear()
        self.release()

    def hold(self) -> None:
        """Keep the next requests waiting (their bodies read, no answer) until release()."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def wait_until_held(self, timeout: float) -> bool:
        """True once a request is being held."""
        return self.held.acquire(timeout=timeout)

    def mails(self) -> list[ReceivedMail]:
        """Mails answered 200 (accepted), in arrival order."""
        with self.lock:
            return [m for m in self.received if m.body.get("_status") == 200]

    def attempts(self) -> int:
        with self.lock:
            return len(self.received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _peer_gone(connection: socket.socket) -> bool:
    """True when the client closed its side (readable, and reading gives end of file)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def start_fake_postmark() -> FakePostmark:
    fake: FakePostmark

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not fake.released.is_set():
                fake.held.release()
                fake.released.wait()
                if _peer_gone(self.connection):
                    with fake.lock:
                        fake.abandoned.append(ReceivedMail(dict(self.headers.items()), body))
                    self.close_connection = True
                    return
            with fake.lock:
                status = fake.answers.popleft() if fake.answers else 200
                body["_status"] = status
                fake.received.append(ReceivedMail(dict(self.headers.items()), body))
            if self.path != "/email":
                status, payload = 404, {"ErrorCode": 404, "Message": "Not found"}
            elif status == 200:
                payload = {
                    "To": body.get("To"),
                    "SubmittedAt": "2026-01-01T00:00:00Z",
                    "MessageID": str(uuid.uuid4()),
                    "ErrorCode": 0,
                    "Message": "OK",
                }
            elif status == 422:
                payload = {"ErrorCode": 300, "Message": "Invalid email request"}
            else:
                payload = {"ErrorCode": status, "Message": "Server error"}
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake = FakePostmark(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake
