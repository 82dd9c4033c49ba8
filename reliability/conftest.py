"""Fixtures of `make test-reliability`: a private PostgreSQL and Redis for the whole run,
the Postmark stand-in, and per scenario a fresh database with the API server, a Celery worker
and beat started as a deployment starts them. Each scenario reports what it injected and
what it counted; the figures are printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability.deployment import Deployment
from reliability.stack import Postgres, Redis, postgres_bin
from tests.postmark_fake import FakePostmark, start_fake_postmark

_FIGURES: list[tuple[str, str]] = []


class Report:
    """Lines of figures for one scenario, printed as they come and again at the end."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario

    def __call__(self, line: str) -> None:
        _FIGURES.append((self.scenario, line))
        print(f"[{self.scenario}] {line}", flush=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    current = None
    for scenario, line in _FIGURES:
        if scenario != current:
            terminalreporter.write_line(f"{scenario}:")
            current = scenario
        terminalreporter.write_line(f"  {line}")


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [name for name in ("redis-server",) if shutil.which(name) is None]
    try:
        postgres_bin()
    except RuntimeError:
        missing.append("PostgreSQL server (initdb, pg_ctl)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser (PostgreSQL refuses to run as root)")
    if missing:
        pytest.exit(
            "make test-reliability starts its own servers and needs: "
            + ", ".join(missing)
            + "\n(Debian: apt-get install postgresql redis-server)",
            3,
        )


@pytest.fixture(scope="session")
def run_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="gatehouse-reliability-"))
    folder.chmod(0o755)  # the postgres user must reach its cluster inside
    yield folder
    if not os.environ.get("RELIABILITY_KEEP"):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(run_folder: Path) -> Iterator[Postgres]:
    server = Postgres(run_folder / "postgres")
    server.init()
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server(run_folder: Path) -> Iterator[Redis]:
    server = Redis(run_folder / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postmark() -> Iterator[FakePostmark]:
    fake = start_fake_postmark()
    yield fake
    fake.stop()


@pytest.fixture()
def report(request: pytest.FixtureRequest) -> Report:
    return Report(request.node.name.removeprefix("test_"))


@pytest.fixture()
def deployment(
    request: pytest.FixtureRequest,
    run_folder: Path,
    postgres: Postgres,
    redis_server: Redis,
    postmark: FakePostmark,
) -> Iterator[Deployment]:
    """A fresh database and Redis; the scenario starts the processes it needs. Whatever a
    scenario stopped is started again in teardown, even when it failed half-way, so one
    failure cannot turn every later scenario into "connection refused" at setup."""
    _restore(postgres, redis_server)
    redis_server.flush()
    postmark.reset()
    name = request.node.name.removeprefix("test_")
    folder = run_folder / f"{name}-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    database_url = postgres.create_database(f"reliability_{name}"[:60])
    deploy = Deployment(
        folder=folder,
        database_url=database_url,
        redis=redis_server,
        postgres=postgres,
        postmark=postmark,
    )
    try:
        yield deploy
    finally:
        failed = getattr(request.node, "rep_call", None)
        try:
            deploy.stop_all()
        finally:
            _restore(postgres, redis_server)
        if failed is not None and failed.failed:
            for service in deploy.services:
                print(f"\n----- {service.name} log (last lines) -----\n{deploy.log_tail(service)}")


def _restore(postgres: Postgres, redis_server: Redis) -> None:
    """Start the shared servers again if a scenario left them stopped."""
    if not postgres.running():
        postgres.start()
    if not redis_server.running():
        redis_server.start()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
