"""A GitHub-shaped OAuth2 provider for the federation tests (issue 27: no internet here):
a small http.server on loopback speaking GitHub's web flow and API as documented.

- GET  /login/oauth/authorize: approves at once (the user `login` set by the test) and
  redirects to redirect_uri with a one-time code and the state.
- POST /login/oauth/access_token: checks the client, the code, its redirect_uri and the
  PKCE verifier (GitHub takes S256 too); JSON when asked with Accept: application/json,
  form-encoded otherwise (as GitHub does); a bad code is HTTP 200 with `error`.
- GET  {any prefix}/user and {any prefix}/user/emails with the bearer token, so a
  userinfoURL override can put the API under any base (GitHub Enterprise's /api/v3).
- GET  {any prefix}/userinfo: a nested, non-GitHub profile for the generic oauth2 strategy.

Each test sets the user (`profile`, `emails`) and how the provider misbehaves (`mode`),
and reads back what was asked of it (`requests`)."""

from __future__ import annotations

import hashlib
import json
import threading
from base64 import urlsafe_b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

# The client federation_support.make_connection registers for every connection.
from tests.federation_support import CLIENT_ID, CLIENT_SECRET


@dataclass
class Seen:
    """One request the stand-in answered."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class GitHub:
    """The stand-in's state. `mode`: "" (behaves), "token_error", "token_form" (answer
    form-encoded whatever Accept says), "token_html", "token_500", "user_500", "user_html",
    "emails_500", "user_401"."""

    base: str = ""
    profile: dict[str, Any] = field(default_factory=dict)
    emails: list[dict[str, Any]] = field(default_factory=list)
    userinfo: dict[str, Any] = field(default_factory=dict)
    mode: str = ""
    requests: list[Seen] = field(default_factory=list)
    _codes: dict[str, dict[str, str]] = field(default_factory=dict)
    _tokens: set[str] = field(default_factory=set)
    _counter: int = 0

    def user(self, user_id: int, login: str, email: str | None, *, verified: bool = True) -> None:
        """The user who signs in next: GitHub's /user and /user/emails for them."""
        self.profile = {
            "login": login,
            "id": user_id,
            "avatar_url": f"https://avatars.example/u/{user_id}",
            "name": login.capitalize(),
            "email": None,
            "type": "User",
        }
        self.emails = (
            [{"email": email, "primary": True, "verified": verified, "visibility": "private"}]
            if email
            else []
        )

    def paths(self) -> list[str]:
        return [seen.path for seen in self.requests]

    def reset(self) -> None:
        self.profile, self.emails, self.userinfo, self.mode = {}, [], {}, ""
        self.requests.clear()
        self._codes.clear()
        self._tokens.clear()

    def next_value(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:06d}"


def _s256(verifier: str) -> str:
    return urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _handler(state: GitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet test output
            pass

        def _send(self, status: int, body: bytes, kind: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8")

        def _html(self, status: int = 200) -> None:
            self._send(status, b"<html><body>Unicorn!</body></html>", "text/html")

        def _record(self, form: dict[str, str]) -> Seen:
            parts = urlsplit(self.path)
            seen = Seen(
                self.command, parts.path, dict(parse_qsl(parts.query)), form, dict(self.headers)
            )
            state.requests.append(seen)
            return seen

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen = self._record({})
            if seen.path == "/login/oauth/authorize":
                return self._authorize(seen)
            token = seen.headers.get("Authorization", "").removeprefix("Bearer ")
            if token not in state._tokens or state.mode == "user_401":
                return self._json(401, {"message": "Bad credentials"})
            if state.mode == "user_500" and seen.path.endswith("/user"):
                return self._html(500)
            if state.mode == "user_html":
                return self._html()
            if seen.path.endswith("/user/emails"):
                if state.mode == "emails_500":
                    return self._json(500, {"message": "Server Error"})
                return self._json(200, state.emails)
            if seen.path.endswith("/user"):
                return self._json(200, state.profile)
            if seen.path.endswith("/userinfo"):
                return self._json(200, state.userinfo)
            return self._json(404, {"message": "Not Found"})

        def _authorize(self, seen: Seen) -> None:
            query = seen.query
            if query.get("client_id") != CLIENT_ID:
                return self._html(404)
            code = state.next_value("code")
            state._codes[code] = {
                "redirect_uri": query.get("redirect_uri", ""),
                "challenge": query.get("code_challenge", ""),
            }
            back = {"code": code, "state": query.get("state", "")}
            location = f"{query['redirect_uri']}?{urlencode(back)}"
            return self._send(302, b"", "text/html", Location=location)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            seen = self._record(form)
            if seen.path != "/login/oauth/access_token":
                return self._json(404, {"message": "Not Found"})
            if state.mode == "token_500":
                return self._html(500)
            if state.mode == "token_html":
                return self._html()
            issued = state._codes.pop(form.get("code", ""), None)
            good = (
                issued is not None
                and form.get("client_id") == CLIENT_ID
                and form.get("client_secret") == CLIENT_SECRET
                and form.get("redirect_uri") == issued["redirect_uri"]
                and _s256(form.get("code_verifier", "")) == issued["challenge"]
                and state.mode != "token_error"
            )
            if good:
                token = state.next_value("gho_")
                state._tokens.add(token)
                body = {"access_token": token, "token_type": "bearer", "scope": "read:user"}
            else:
                body = {
                    "error": "bad_verification_code",
                    "error_description": "The code passed is incorrect or expired.",
                }
            wants_json = "application/json" in seen.headers.get("Accept", "")
            if wants_json and state.mode != "token_form":
                return self._json(200, body)
            return self._send(
                200, urlencode(body).encode(), "application/x-www-form-urlencoded; charset=utf-8"
            )

    return Handler


@contextmanager
def running_github() -> Iterator[GitHub]:
    """Serve the stand-in on a free loopback port (in a thread); stop it after."""
    state = GitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
