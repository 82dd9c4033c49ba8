"""The real-browser test's plumbing: find a Chromium to drive, and decide what happens
without one. Browser downloads (`playwright install`) are not used: the test drives the
system's Chromium (Debian's `chromium`, which `make browser` installs with apt).

With no Chromium on the machine (a laptop without apt, say) the browser tests are left
out with a notice at the end of the run, and the rest of the suite still runs; with
REQUIRE_BROWSER=1 (as `.ci/run` sets) a missing browser stops the run instead, so CI can
never pass without it.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless and quiet: no sandbox (CI runs as root), no GPU, and no calls home (this
# network refuses them, and a test must not depend on them).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT_DIR = Path(os.environ.get("TEST_OUTPUT_DIR") or Path(__file__).parent.parent / "test-output")
_LEFT_OUT: list[str] = []
# A name for the loopback address that is not a loopback name (the browser maps it).
OTHER_HOST = "gatehouse.example"


def csp_violations(page: Any) -> list[str]:
    """The browser's console messages about the page's Content-Security-Policy, as they
    come (a list the caller asserts empty: nothing on the page breaks its own policy)."""
    found: list[str] = []
    page.on(
        "console",
        lambda msg: found.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return found


def chromium_path() -> str | None:
    """CHROMIUM (a path) if set, else the first Chromium or Chrome on PATH."""
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real Chromium (see browser_support)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = [item for item in items if item.get_closest_marker("browser")]
    if not wanted or chromium_path() is not None:
        return
    if os.environ.get("REQUIRE_BROWSER"):
        raise pytest.UsageError(
            "REQUIRE_BROWSER is set but no Chromium was found: run `make browser` "
            "(apt-get install chromium) or set CHROMIUM to a Chromium or Chrome binary."
        )
    config.hook.pytest_deselected(items=wanted)
    items[:] = [item for item in items if item not in wanted]
    _LEFT_OUT.extend(item.nodeid for item in wanted)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LEFT_OUT:
        terminalreporter.write_sep("=", "browser tests not run", yellow=True)
        terminalreporter.write_line(
            f"{len(_LEFT_OUT)} browser test(s) need Chromium, which this machine lacks: "
            "`make browser` installs it (apt, as root), or set CHROMIUM to a Chrome binary. "
            "CI (`.ci/run`) always runs them."
        )


@pytest.fixture(scope="session")
def callback_server() -> Iterator[str]:
    """The app's own redirect URI: a local page that says the sign-in came back."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = b"<!doctype html><title>Back in the app</title><h1>Back in the app</h1>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/callback"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # A name for the loopback address that is not a loopback name: a site served
        # over plain http on a real host, as browsers treat one.
        mapped = f"--host-resolver-rules=MAP {OTHER_HOST} 127.0.0.1"
        chromium = playwright.chromium.launch(
            executable_path=chromium_path(), args=[*CHROMIUM_ARGS, mapped], headless=True
        )
        yield chromium
        chromium.close()
