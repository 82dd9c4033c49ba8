"""The real processes of a deployment, started and broken on purpose: a private PostgreSQL
and Redis (never the machine's shared ones), gunicorn (or Granian, RELIABILITY_SERVER), a
Celery worker and beat.

Every process writes its output to a log file in the run's folder, so a failed scenario
can show what the service said.
"""

from __future__ import annotations

import base64
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The API's server: "gunicorn" (gunicorn.conf.py) or "granian" (reliability/granian_serve.py,
# with granian from the folder `make bench` installs bench/variants/requirements.txt into).
SERVER = os.environ.get("RELIABILITY_SERVER", "gunicorn")
VARIANTS_PATH = Path(
    os.environ.get("RELIABILITY_VARIANTS_PATH", str(ROOT / ".venv-bench-variants"))
).resolve()
if SERVER not in ("gunicorn", "granian"):
    raise RuntimeError(f"RELIABILITY_SERVER={SERVER!r}: gunicorn or granian")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check, timeout: float, what: str, interval: float = 0.1):  # noqa: ANN001, ANN201
    """Call `check()` until it returns something truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the service is still coming up
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s (last error: {last_error!r})")


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name}: no output)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise RuntimeError("PostgreSQL server binaries (pg_ctl, initdb) are not installed")


class Postgres:
    """A throw-away PostgreSQL cluster in `folder`, on its own port. PostgreSQL refuses to
    run as root, so as root the cluster belongs to the `postgres` system user."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.port = free_port()
        self.bin = postgres_bin()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            owner = pwd.getpwnam("postgres")
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        else:
            folder.mkdir(parents=True, exist_ok=True)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, check=check, timeout=120
        )

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.folder}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
                  check=False)  # fmt: skip

    def running(self) -> bool:
        """`pg_ctl status`: 0 while the server runs, 3 when it is stopped."""
        status = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return status.returncode == 0

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url(name)

    def destroy(self) -> None:
        self.stop("immediate")


class Redis:
    """A private redis-server on its own port, nothing kept on disk: stopping it loses
    the queue, as a crashed broker without persistence would."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.log = folder / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_until(client.ping, 10, f"redis on port {self.port}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.running():
            self.process.terminate()  # type: ignore[union-attr]
            self.process.wait(timeout=10)  # type: ignore[union-attr]
        self.process = None

    def flush(self) -> None:
        redis.Redis.from_url(self.url).flushall()


@dataclass
class Service:
    """One started command (the API server, a Celery worker, beat) in its own process
    group."""

    name: str
    command: list[str]
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def start(self) -> Service:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=dict(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[int]:
        """Pids of the direct children (the API server's or Celery's pool workers)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal the whole process group (the main process and its pool) and wait until
        every one of them has exited (so their sockets are closed)."""
        if self.process is None:
            return
        pool = self.children()
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        wait_exited(pool)

    def stop(self) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def exited(pid: int) -> bool:
    """True once `pid` is gone or a zombie (its files, sockets included, are closed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return bool(re.search(r"State:\s+[ZX]", status))


def wait_exited(pids: list[int], timeout: float = 30) -> None:
    wait_until(lambda: all(exited(pid) for pid in pids), timeout, f"processes {pids} to exit")


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))


def app_environment(*, database_url: str, redis_url: str, folder: Path, **extra: str) -> dict:
    """The variables a deployment sets (config.py reads them), production mode."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEHOUSE", "DATABASE_", "REDIS_", "CELERY_", "POSTMARK", "RATE"))
    }
    env.update(
        {
            "APP_ENV": "production",
            "INSTANCE_PATH": str(folder / "instance"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "reliability-secret-key-" + base64.b16encode(os.urandom(8)).decode(),
            "ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "ROOT_API_KEY": "gh_root_reliability",
            "ISSUER": "http://gatehouse.reliability",
            # A made-up host over plain http, on purpose (production refuses it otherwise).
            "ALLOW_INSECURE_ISSUER": "true",
            "EMAIL_FROM": "gatehouse@example.com",
            "POSTMARK_SERVER_TOKEN": "reliability-postmark-token",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def flask(env: Mapping[str, str], *args: str) -> str:
    """Run `flask --app wsgi ARGS` as an operator would; its standard output."""
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def api_server(env: Mapping[str, str], folder: Path, name: str, workers: int = 2) -> Service:
    """The API as the run's server serves it: gunicorn, or Granian with
    RELIABILITY_SERVER=granian (issue 29: adopted only if every scenario passes on it)."""
    if SERVER == "granian":
        return granian(env, folder, name, workers)
    return gunicorn(env, folder, name, workers)


def gunicorn(env: Mapping[str, str], folder: Path, name: str, workers: int = 2) -> Service:
    port = free_port()
    service = Service(
        name,
        [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "wsgi:app"],
        {**env, "GUNICORN_CMD_ARGS": f"--workers {workers} --timeout 60 --no-control-socket"},
        folder / f"{name}.log",
        extra={"base": f"http://127.0.0.1:{port}"},
    )
    return service.start()


def granian(env: Mapping[str, str], folder: Path, name: str, workers: int = 2) -> Service:
    """Granian in WSGI mode through reliability/granian_serve.py, which does what
    gunicorn.conf.py does in gunicorn's master (the settings check, the metrics folder)
    and sets bench/run.py `_granian()`'s shape; granian itself comes from
    RELIABILITY_VARIANTS_PATH, on this process's PYTHONPATH only. gunicorn's `--timeout 60`
    (a worker silent that long is killed) has no Granian counterpart."""
    if not (VARIANTS_PATH / "granian").is_dir():
        raise RuntimeError(
            f"{VARIANTS_PATH} has no granian: `make {VARIANTS_PATH.name}/.installed-…` "
            "(make test-reliability RELIABILITY_SERVER=granian installs it)"
        )
    port = free_port()
    pythonpath = [str(VARIANTS_PATH), str(ROOT), env.get("PYTHONPATH", "")]
    service = Service(
        name,
        [str(BIN / "python"), "-m", "reliability.granian_serve",
         "--host", "127.0.0.1", "--port", str(port), "wsgi:app"],
        {**env, "GRANIAN_WORKERS": str(workers),
         "PYTHONPATH": os.pathsep.join(filter(None, pythonpath))},
        folder / f"{name}.log",
        extra={"base": f"http://127.0.0.1:{port}"},
    )  # fmt: skip
    return service.start()


def celery_worker(env: Mapping[str, str], folder: Path, name: str = "worker") -> Service:
    return Service(
        name,
        [str(BIN / "celery"), "-A", "worker", "worker", "--loglevel", "INFO",
         "--concurrency", "2", "-n", f"{name}-{os.getpid()}-{time.time_ns()}@%h"],
        env,
        folder / f"{name}.log",
    ).start()  # fmt: skip


def celery_beat(env: Mapping[str, str], folder: Path) -> Service:
    return Service(
        "beat",
        [str(BIN / "celery"), "-A", "worker", "beat", "--loglevel", "INFO",
         "--schedule", str(folder / "celerybeat-schedule")],
        env,
        folder / "beat.log",
    ).start()  # fmt: skip
