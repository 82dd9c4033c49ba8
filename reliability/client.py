"""A small HTTP client for the scenarios and the bench: one connection per call (gunicorn's
sync workers close it anyway), a hard timeout, the time each answer took, and an open-loop
driver that starts calls at a fixed rate whatever the answers' pace (the soak's traffic and
`make bench`'s latency at half the measured capacity both use it)."""

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
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        body = response.read()
        return Answer(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            body,
            time.perf_counter() - started,
        )
    except (OSError, http.client.HTTPException) as exc:
        return Answer(0, {}, b"", time.perf_counter() - started, type(exc).__name__)
    finally:
        connection.close()


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
