"""A small HTTP client for the scenarios and the bench: one connection per call (the
scenarios kill and restart servers under it), or kept connections, one per thread (as an
app's HTTP client keeps them: the bench's open loop); a hard timeout, the time each answer
took, and an open-loop driver that starts calls at a fixed rate whatever the answers' pace
(the soak's traffic and `make bench`'s latency at half the measured capacity both use it)."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int  # 0 when no answer came (refused, reset, timed out)
    headers: dict[str, str]
    body: bytes
    seconds: float
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def __repr__(self) -> str:
        return f"<{self.status} {self.error or self.text[:300]!r} in {self.seconds:.2f}s>"


def call(
    base: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Answer:
    """Send one request to `base` (http://host:port); never raises for network errors."""
    url = urllib.parse.urlsplit(base)
    sent = dict(headers or {})
    data: bytes | None = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        sent["Content-Type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    started = time.perf_counter()
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        return _exchange(connection, method, path, data, sent, started)
    finally:
        connection.close()


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    data: bytes | None,
    headers: dict[str, str],
    started: float,
) -> Answer:
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        body = response.read()
        return Answer(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            body,
            time.perf_counter() - started,
        )
    except (OSError, http.client.HTTPException) as exc:
        connection.close()  # the next call on it connects again
        return Answer(0, {}, b"", time.perf_counter() - started, type(exc).__name__)


class KeptConnections:
    """GETs to one server over a kept connection per calling thread (HTTP/1.1 keep-alive;
    a connection the server closed is opened again on the next call, not retried)."""

    def __init__(self, base: str, timeout: float = 15.0) -> None:
        url = urllib.parse.urlsplit(base)
        self._host, self._port, self._timeout = url.hostname, url.port, timeout
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return _exchange(connection, "GET", path, None, dict(headers or {}), time.perf_counter())

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()


def open_loop(
    send: Callable[[], object], rate: float, seconds: float, in_flight: int = 32
) -> tuple[float, int]:
    """Call `send` `rate` times per second for `seconds`, each call started on schedule
    whatever the earlier answers' pace (an open loop: a slow answer does not slow the
    clients that follow, so latency is not hidden by backing off). At most `in_flight`
    wait at once: when the service (on a shared machine) falls more than a second behind,
    the calls it could not take are dropped from the schedule rather than piled up.
    Returns the rate achieved and how many calls were dropped."""
    interval = 1.0 / rate
    slots = threading.Semaphore(in_flight)
    started = time.perf_counter()
    due = started
    sent = dropped = 0

    def one() -> None:
        try:
            send()
        finally:
            slots.release()

    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        while due - started < seconds:
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            slots.acquire()
            behind = time.perf_counter() - due
            if behind > 1.0:
                skipped = int(behind / interval)
                dropped += skipped
                due += skipped * interval
            pool.submit(one)
            sent += 1
            due += interval
    return sent / (time.perf_counter() - started), dropped


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
