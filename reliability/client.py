"""A small HTTP client for the scenarios: one connection per call (gunicorn's sync workers
close it anyway), a hard timeout, and the time each answer took."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
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
