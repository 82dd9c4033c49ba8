"""Performance figures for SPEC §9, printed, never asserted: run `make bench`.

It builds its own PostgreSQL database (`gatehouse_bench`), serves the app with gunicorn on
127.0.0.1 (Redis on 127.0.0.1:6379, db 14) and measures with `wrk` (Debian package `wrk`):

1. authenticated `GET /user/profile` (bearer JWT) against `GET /healthz`, 32 connections;
2. password sign-in throughput against bare argon2id verification on the same cores;
3. a user-list page and an email lookup at 1 thousand and at BENCH_USERS users;
4. that an authenticated read issues no database write (printed under 1).

Environment: BENCH_DATABASE_URL (admin URL, default postgresql://postgres@127.0.0.1:5432/
postgres), BENCH_REDIS_URL, BENCH_USERS (default 200000), BENCH_SECONDS (default 10),
BENCH_WORKERS (gunicorn workers, default 2 per core).
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the argon2 baseline imports app.core.security
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
USERS = int(os.environ.get("BENCH_USERS", "200000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CORES = os.cpu_count() or 1
WORKERS = int(os.environ.get("BENCH_WORKERS", str(2 * CORES)))
PORT = 5099
DB_NAME = "gatehouse_bench"
PASSWORD = "bench-password-1"


def _db_url(name: str) -> str:
    return ADMIN_URL.rpartition("/")[0] + "/" + name


def _env(instance: str) -> dict[str, str]:
    return {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": _db_url(DB_NAME),
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": "bench-secret-key-0123456789",
        "ENCRYPTION_KEYS": base64.urlsafe_b64encode(b"b" * 32).decode(),
        "ROOT_API_KEY": "gh_root_bench",
        "RATELIMIT_ENABLED": "false",
        "INSTANCE_PATH": instance,
        "LOG_LEVEL": "WARNING",
    }


def _flask(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _http(method: str, path: str, headers: dict[str, str], body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}{path}",
        data=data,
        method=method,
        headers={**headers, **({"Content-Type": "application/json"} if data else {})},
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read() or b"{}")


def _wrk(path: str, headers: dict[str, str], script: str | None = None) -> tuple[float, float]:
    """Requests per second and p99 latency (ms) at 32 connections."""
    command = ["wrk", "-t2", "-c32", f"-d{SECONDS}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", script]
    command.append(f"http://127.0.0.1:{PORT}{path}")
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    if "Non-2xx" in out:
        print("   warning: wrk saw non-2xx answers:", out.split("Non-2xx")[1].split("\n")[0])
    return rps, float(p99.group(1)) * factor


def _verify_loop(seconds: float) -> int:
    from app.core import security

    hashed = security.hash_password(PASSWORD)
    deadline, count = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        security.verify_password(hashed, PASSWORD)
        count += 1
    return count


def _bare_argon2_per_second() -> float:
    with multiprocessing.Pool(CORES) as pool:
        counts = pool.map(_verify_loop, [float(SECONDS)] * CORES)
    return sum(counts) / SECONDS


def _seed_users(tenant_id: str, count: int, start: int) -> None:
    """Bulk rows straight into the table: a bench fixture, not the service's path."""
    with psycopg.connect(_db_url(DB_NAME)) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY user_account (tenant_id, id, username, username_normalized, email,"
            " email_normalized, email_verified, blocked, custom_scopes, settings,"
            " user_metadata, app_metadata, require_twofactor_auth, logins_count, version,"
            " created_at, updated_at) FROM STDIN"
        ) as copy:
            for n in range(start, start + count):
                name = f"user{n:08d}"
                mail = f"{name}@example.com"
                copy.write_row(
                    (
                        tenant_id,
                        name,
                        name,
                        name,
                        mail,
                        mail,
                        True,
                        False,
                        "[]",
                        "[]",
                        "{}",
                        "{}",
                        False,
                        0,
                        1,
                        "2026-01-01T00:00:00Z",
                        "2026-01-01T00:00:00Z",
                    )
                )
        conn.commit()


def _timed_reads(paths: list[str], headers: dict[str, str], repeat: int = 300) -> float:
    """Median milliseconds of one read (the median resists the machine's noise)."""
    times = []
    for i in range(repeat):
        started = time.perf_counter()
        _http("GET", paths[i % len(paths)], headers)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _count_writes(dbname: str) -> int:
    with psycopg.connect(_db_url(dbname)) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        ).fetchone()
        return int(row[0])


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench needs wrk: apt-get install wrk")
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    instance = tempfile.mkdtemp(prefix="gatehouse-bench-")
    env = _env(instance)
    _flask(env, "db", "upgrade")
    tenant_id = _flask(env, "tenants", "create", "bench").strip()
    key = re.search(r"key: (\S+)", _flask(env, "keys", "create", tenant_id)).group(1)

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(WORKERS),
            "-b",
            f"127.0.0.1:{PORT}",
            "--log-level",
            "warning",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        for _ in range(100):
            try:
                _http("GET", "/healthz", {})
                break
            except OSError:
                time.sleep(0.1)
        api = {"X-APIKEY": key}
        _http(
            "POST",
            "/auth/user",
            api,
            {"uid": "bench-user", "email": "bench@example.com", "password": PASSWORD},
        )
        tokens = _http(
            "POST",
            "/oauth/token",
            {"X-Tenant-ID": tenant_id},
            {"grant_type": "password", "username": "bench@example.com", "password": PASSWORD},
        )
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

        print(f"gunicorn workers={WORKERS}, wrk 32 connections, {SECONDS}s per run")
        health_rps, health_p99 = _wrk("/healthz", {})
        profile_rps, profile_p99 = _wrk("/user/profile", bearer)
        print(f"1. GET /healthz        {health_rps:9.0f} req/s  p99 {health_p99:6.1f} ms")
        print(f"   GET /user/profile   {profile_rps:9.0f} req/s  p99 {profile_p99:6.1f} ms")
        print(
            f"   ratio profile/healthz = {profile_rps / health_rps:.2f}  (floor 0.5, p99 < 20 ms)"
        )

        # PostgreSQL reports a backend's writes up to ~10 s after its last transaction:
        # wait that out on both sides, so only the reads' own writes are counted.
        time.sleep(11)
        before = _count_writes(DB_NAME)
        subprocess.run(
            [
                "wrk",
                "-t1",
                "-c8",
                "-d3s",
                "-H",
                f"Authorization: {bearer['Authorization']}",
                f"http://127.0.0.1:{PORT}/user/profile",
            ],
            check=True,
            capture_output=True,
        )
        time.sleep(11)
        written = _count_writes(DB_NAME) - before
        print(f"   database rows written by 3 s of authenticated reads: {written} (floor 0)")

        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
            body = json.dumps(
                {"grant_type": "password", "username": "bench@example.com", "password": PASSWORD}
            )
            lua.write(
                f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                f'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["X-Tenant-ID"] = "{tenant_id}"\n'
            )
        signin_rps, _ = _wrk("/oauth/token", {}, script=lua.name)
        bare = _bare_argon2_per_second()
        print(
            f"2. password sign-in    {signin_rps:9.1f} req/s; bare argon2id verify "
            f"{bare:7.1f}/s on {CORES} cores; ratio {signin_rps / bare:.2f} (floor 0.9)"
        )

        lookups = [f"/auth/user?email=user{n:08d}@example.com" for n in range(0, 1000, 97)]
        _seed_users(tenant_id, 1000, 0)
        small_list = _timed_reads(["/api/v1/users?limit=50"], api)
        small_mail = _timed_reads(lookups, api)
        _seed_users(tenant_id, USERS - 1000, 1000)
        with psycopg.connect(_db_url(DB_NAME), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE user_account")
            conn.execute("CHECKPOINT")  # the bulk load's I/O must not land on the timing
        _timed_reads(["/api/v1/users?limit=50"], api, repeat=50)  # warm caches
        big_list = _timed_reads(["/api/v1/users?limit=50"], api)
        big_mail = _timed_reads(lookups, api)
        print(
            f"3. list page   {small_list:6.2f} ms at 1k users, {big_list:6.2f} ms at {USERS} "
            f"({big_list / small_list:.2f}x; floor: within 1.2x)"
        )
        print(
            f"   email lookup {small_mail:5.2f} ms at 1k users, {big_mail:6.2f} ms at {USERS} "
            f"({big_mail / small_mail:.2f}x)"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(instance, ignore_errors=True)


if __name__ == "__main__":
    main()
