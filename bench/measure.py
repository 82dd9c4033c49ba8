"""Measuring tools of `make bench`: free ports, servers started and stopped, `wrk` runs
(closed loop: each connection sends its next request when the answer came), open-loop runs
at a fixed rate (the soak's client, reliability/client.py), and the CPU a server (its
processes and their PostgreSQL backends) spent per request.

CPU per request is read from /proc before and after each run: on a shared machine it
moves far less than requests per second, so it is printed beside every throughput.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
from reliability import client  # noqa: E402  (the soak's client: one driver for both)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    how = "install it with: apt-get install -y wrk (Debian/Ubuntu) or brew install wrk (macOS)"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"make bench needs wrk; {how}")
    print("installing wrk with apt-get …", flush=True)
    install = ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(install, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)  # stale lists
        subprocess.run(install, check=False, capture_output=True)
    found = shutil.which("wrk")
    if found:
        return found
    sys.exit(f"make bench could not install wrk; {how}")


def _process_tree(root: int) -> list[int]:
    """`root` and every descendant (gunicorn's or uvicorn's workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLOCK_TICKS


@dataclass
class Server:
    """A served app: its process, base URL and the database its workers use."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    database: str
    admin_url: str
    backends: set[int] = field(default_factory=set)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of (the server's processes, their PostgreSQL backends)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.database,),
            ).fetchall()
        self.backends |= {row[0] for row in rows}
        return _cpu_seconds(_process_tree(self.process.pid)), _cpu_seconds(sorted(self.backends))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    name: str,
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    url: str,
    ready_path: str,
    database: str,
    admin_url: str,
) -> Server:
    """Start a server at base `url` and wait (up to 60 s) until `ready_path` answers."""
    process = subprocess.Popen(command, cwd=cwd, env=env)
    server = Server(name, process, url, database, admin_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited at start-up (status {process.returncode})")
        try:
            urllib.request.urlopen(url + ready_path, timeout=2).close()
            return server
        except urllib.error.HTTPError:
            return server  # it answers, if only with an error: it is up
        except OSError:
            time.sleep(0.2)
    server.stop()
    sys.exit(f"{name} did not answer at {url} within 60 s")


@dataclass
class Run:
    """One wrk run: throughput, latency and the server's CPU per request."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_ms: float  # server processes + their PostgreSQL backends, per request
    db_cpu_ms: float  # of which the PostgreSQL backends


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    server: Server,
    path: str,
    *,
    seconds: int,
    connections: int,
    headers: dict[str, str] | None = None,
    script: str | None = None,
) -> Run:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", script]
    command.append(server.url + path)
    app_before, db_before = server.cpu()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    app_after, db_after = server.cpu()  # backends opened meanwhile count too
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    if errors:
        lines = [line.strip() for line in out.splitlines() if "errors" in line or "Non-2xx" in line]
        print(f"   {server.name} {path}: {'; '.join(lines)}", flush=True)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    return Run(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(*p50.groups()),  # type: ignore[union-attr]
        p99_ms=_ms(*p99.groups()),  # type: ignore[union-attr]
        requests=requests,
        errors=errors,
        cpu_ms=(app_after - app_before + db_after - db_before) * 1000 / max(requests, 1),
        db_cpu_ms=(db_after - db_before) * 1000 / max(requests, 1),
    )


@dataclass
class OpenLoop:
    """One open-loop run: requests started at `target_rps` whatever the answers' pace."""

    target_rps: float
    achieved_rps: float  # what the Python client held (it shares the cores with the server)
    dropped: int  # requests dropped from the schedule when over a second behind
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # server processes + their PostgreSQL backends, per request
    db_cpu_ms: float


def open_loop(
    server: Server,
    path: str,
    *,
    rate: float,
    seconds: float,
    headers: dict[str, str],
    kept: bool = True,
) -> OpenLoop:
    """GET `path` at `rate` per second for `seconds` with the soak's open-loop driver, over
    kept connections (one per client thread, as an app's HTTP client keeps them, and as wrk
    measured the capacity) or, `kept=False`, a new connection per request (as the soak sends
    them); latency from sending to the whole answer."""
    answers: list[client.Answer] = []
    connections = client.KeptConnections(server.url)

    def send() -> None:
        if kept:
            answers.append(connections.get(path, headers))
        else:
            answers.append(client.call(server.url, "GET", path, headers=headers))

    app_before, db_before = server.cpu()
    try:
        achieved, dropped = client.open_loop(send, rate, seconds)
    finally:
        connections.close()
    app_after, db_after = server.cpu()
    seconds_each = [answer.seconds for answer in answers]
    count = max(len(answers), 1)
    return OpenLoop(
        target_rps=rate,
        achieved_rps=achieved,
        dropped=dropped,
        requests=len(answers),
        errors=sum(1 for answer in answers if answer.status != 200),
        p50_ms=client.percentile(seconds_each, 0.5) * 1000,
        p99_ms=client.percentile(seconds_each, 0.99) * 1000,
        cpu_ms=(app_after - app_before + db_after - db_before) * 1000 / count,
        db_cpu_ms=(db_after - db_before) * 1000 / count,
    )
