"""Performance figures for SPEC §9, printed and written, never asserted: `make bench`.

Serves Gatehouse with gunicorn (the settings of gunicorn.conf.py, the production
recommendation; or Granian, BENCH_SERVER=granian) and the fastapi-users peer (bench/peers,
uvicorn, as many workers) on free ports of 127.0.0.1, both on the same PostgreSQL, and
measures with wrk at BENCH_CONNECTIONS connections, BENCH_ROUNDS rounds interleaved
(medians reported):

1. `GET /user/profile` (bearer) against Gatehouse's `GET /healthz` and against the peer's
   `GET /users/me` (JWT); `GET /user/{id}` with an API key; a secret value read (decrypt);
   each with closed-loop p50/p99 latency and the server CPU (workers + their PostgreSQL
   backends) per request, and the ratios of both; that authenticated reads write no row;
2. the latency of `GET /user/profile` open-loop, at a fixed rate of half the req/s wrk
   measured for it in the same run (the soak's driver, reliability/client.py, over kept
   connections; and with a new connection per request, as the soak sends them);
3. password sign-in throughput against bare argon2id verification on the same cores;
4. a user-list page and an email lookup in a tenant of 1 000 users and one of BENCH_USERS.

Results go to bench/results/latest.json and latest.md. The databases are kept between
runs (`make bench-reset` drops them). Environment: BENCH_DATABASE_URL (admin URL),
BENCH_REDIS_URL, BENCH_USERS (1 000 000), BENCH_SECONDS (5), BENCH_ROUNDS (3),
BENCH_CONNECTIONS (32), BENCH_GUNICORN_ARGS / BENCH_GRANIAN_ARGS (extra flags),
BENCH_SERVER (gunicorn, or granian), BENCH_JSON (empty, or orjson: Flask's JSON provider
writes with orjson, bench/variants/wsgi_orjson.py), BENCH_OPEN_READS (profile: the reads
measured open-loop), BENCH_OPEN_SECONDS (10), BENCH_PEER_PYTHON (the peer venv's python;
empty = skip the peer), BENCH_RESET=1 (drop the databases and stop), BENCH_QUICK=1 (the
reads only, `signin` selectable in BENCH_READS, printed, no results written unless
BENCH_QUICK_OUT names a JSON file: for iterating and for bench/compare.py).
"""

from __future__ import annotations

import importlib.metadata
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402
import seed  # noqa: E402

ROOT = seed.ROOT
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
USERS = int(os.environ.get("BENCH_USERS", "1000000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
EXTRA_GUNICORN_ARGS = os.environ.get("BENCH_GUNICORN_ARGS", "").split()
EXTRA_GRANIAN_ARGS = os.environ.get("BENCH_GRANIAN_ARGS", "").split()
SERVER = os.environ.get("BENCH_SERVER", "gunicorn")
JSON_VARIANT = os.environ.get("BENCH_JSON", "")
# Granian and orjson are not the service's requirements: bench/variants/requirements.txt,
# installed by `make bench` with pip --target into this folder.
VARIANTS_PATH = os.path.abspath(
    os.environ.get("BENCH_VARIANTS_PATH", str(seed.ROOT / ".venv-bench-variants"))
)
OPEN_READS = os.environ.get("BENCH_OPEN_READS", "profile").split(",")
OPEN_SECONDS = float(os.environ.get("BENCH_OPEN_SECONDS", "10"))
OPEN_LOAD = 0.5  # of the closed-loop req/s of the same read in the same run
NEW_CONNECTION = ", new connection each"  # the open-loop row whose client does not keep them
PEER_PYTHON = os.environ.get("BENCH_PEER_PYTHON", "")
if PEER_PYTHON:  # the peer runs in bench/peers: a relative path must not follow it there
    PEER_PYTHON = os.path.abspath(PEER_PYTHON)
CORES = os.cpu_count() or 1
RESULTS = ROOT / "bench" / "results"


def _http(base: str, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
    data, kind = None, None
    if isinstance(body, dict):
        data, kind = json.dumps(body).encode(), "application/json"
    elif isinstance(body, str):
        data, kind = body.encode(), "application/x-www-form-urlencoded"
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={**headers, **({"Content-Type": kind} if kind else {})},
    )
    with urllib.request.urlopen(request) as answer:
        raw = answer.read()
    return json.loads(raw) if raw[:1] in (b"{", b"[") else raw


def _app_target(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The WSGI app to serve and the environment that finds it."""
    if SERVER not in ("gunicorn", "granian") or JSON_VARIANT not in ("", "orjson"):
        sys.exit(f"BENCH_SERVER={SERVER!r} BENCH_JSON={JSON_VARIANT!r}: not a measured setup")
    if SERVER == "gunicorn" and not JSON_VARIANT:
        return "wsgi:app", env
    if not Path(VARIANTS_PATH, "orjson").is_dir():
        sys.exit(f"{VARIANTS_PATH} lacks bench/variants/requirements.txt: run `make bench`")
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [VARIANTS_PATH, str(ROOT)]))}
    return ("bench.variants.wsgi_orjson:app" if JSON_VARIANT else "wsgi:app"), env


def _gunicorn(env: dict[str, str]) -> measure.Server:
    port = measure.free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
    command += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", *EXTRA_GUNICORN_ARGS]
    env = {**env, "GUNICORN_CMD_ARGS": ""}  # the bench measures the file's settings
    target, env = _app_target(env)
    base = f"http://127.0.0.1:{port}"
    return measure.start(
        "gunicorn",
        [*command, target],
        cwd=ROOT,
        env=env,
        url=base,
        ready_path="/healthz",
        database=seed.DB_NAME,
        admin_url=ADMIN_URL,
    )


def _granian(env: dict[str, str]) -> measure.Server:
    """Granian in WSGI mode with gunicorn.conf.py's shape: as many workers, its blocking
    threads (the threads that run the app) as gthread's threads, one argon2id hash at a time
    per core, Prometheus counters across workers in a folder of their own."""
    workers = int(env.get("WEB_CONCURRENCY") or min(CORES, 4))
    threads = int(env.get("GUNICORN_THREADS") or 8)
    port = measure.free_port()
    target, env = _app_target(env)
    env = {
        **env,
        "PASSWORD_HASH_CONCURRENCY": str(max(1, CORES // workers)),
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="gatehouse-bench-metrics-"),
    }
    command = [sys.executable, "-m", "granian", "--interface", "wsgi", "--http", "1"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    command += ["--blocking-threads", str(threads), "--no-ws", "--log-level", "warning"]
    command += ["--working-dir", str(ROOT), *EXTRA_GRANIAN_ARGS, target]
    print("   " + " ".join(command[1:]), flush=True)
    return measure.start(
        "granian",
        command,
        cwd=ROOT,
        env=env,
        url=f"http://127.0.0.1:{port}",
        ready_path="/healthz",
        database=seed.DB_NAME,
        admin_url=ADMIN_URL,
    )


def _workers_of(server: measure.Server) -> int:
    return len(measure._process_tree(server.process.pid)) - 1


def _peer(workers: int) -> tuple[measure.Server, dict[str, str]] | None:
    if not PEER_PYTHON:
        return None
    env = {
        **os.environ,
        "PEER_DATABASE_URL": seed.db_url(ADMIN_URL, seed.PEER_DB_NAME).replace(
            "postgresql://", "postgresql+asyncpg://"
        ),
    }
    seed.prepare_peer(ADMIN_URL, PEER_PYTHON, env)
    port = measure.free_port()
    command = [PEER_PYTHON, "-m", "uvicorn", "fastapi_users_app:app", "--port", str(port)]
    command += ["--host", "127.0.0.1", "--workers", str(workers), "--no-access-log"]
    command += ["--log-level", "warning"]
    base = f"http://127.0.0.1:{port}"
    server = measure.start(
        "fastapi-users",
        command,
        cwd=ROOT / "bench" / "peers",
        env=env,
        url=base,
        ready_path="/docs",
        database=seed.PEER_DB_NAME,
        admin_url=ADMIN_URL,
    )
    credentials = {"email": "bench@example.com", "password": seed.PASSWORD}
    try:
        _http(base, "POST", "/auth/register", {}, credentials)
    except urllib.error.HTTPError as exc:  # kept from an earlier run
        if exc.code != 400:
            raise
    form = urllib.parse.urlencode({"username": credentials["email"], "password": seed.PASSWORD})
    token = _http(base, "POST", "/auth/jwt/login", {}, form)["access_token"]
    return server, {"Authorization": f"Bearer {token}"}


def _median(runs: list[measure.Run], attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


def _summary(runs: list[measure.Run]) -> dict[str, Any]:
    return {
        "rps": round(_median(runs, "rps"), 1),
        "p50_ms": round(_median(runs, "p50_ms"), 2),
        "p99_ms": round(_median(runs, "p99_ms"), 2),
        "cpu_ms_per_request": round(_median(runs, "cpu_ms"), 3),
        "db_cpu_ms_per_request": round(_median(runs, "db_cpu_ms"), 3),
        "errors": sum(run.errors for run in runs),
        "rounds_rps": [round(run.rps, 1) for run in runs],
        "rounds_cpu_ms": [round(run.cpu_ms, 3) for run in runs],
    }


def _open_loop(
    server: measure.Server, path: str, headers: dict[str, str], capacity: float, kept: bool
) -> dict[str, Any]:
    """Latency at OPEN_LOAD of `capacity` (closed-loop req/s), open-loop, after 2 s of
    warm-up at the same rate; over kept connections, or a new one per request."""
    rate = OPEN_LOAD * capacity
    measure.open_loop(server, path, rate=rate, seconds=2, headers=headers, kept=kept)
    run = measure.open_loop(
        server, path, rate=rate, seconds=OPEN_SECONDS, headers=headers, kept=kept
    )
    return {
        "target_rps": round(run.target_rps, 1),
        "achieved_rps": round(run.achieved_rps, 1),
        "dropped": run.dropped,
        "requests": run.requests,
        "errors": run.errors,
        "p50_ms": round(run.p50_ms, 2),
        "p99_ms": round(run.p99_ms, 2),
        "cpu_ms_per_request": round(run.cpu_ms, 3),
        "db_cpu_ms_per_request": round(run.db_cpu_ms, 3),
    }


def _count_writes() -> int:
    import psycopg

    with psycopg.connect(seed.db_url(ADMIN_URL, seed.DB_NAME)) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        ).fetchone()
        return int(row[0]) if row else 0


def _writes_during(read: Callable[[], Any]) -> int:
    # PostgreSQL publishes a backend's counters up to ~10 s late: wait that out both sides.
    time.sleep(11)
    before = _count_writes()
    read()
    time.sleep(11)
    return _count_writes() - before


def _verify_loop(seconds: float) -> int:
    sys.path.insert(0, str(ROOT))
    from app.core import security

    hashed = security.hash_password(seed.PASSWORD)
    deadline, count = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        security.verify_password(hashed, seed.PASSWORD)
        count += 1
    return count


def _bare_argon2_per_second() -> float:
    with multiprocessing.Pool(CORES) as pool:
        counts = pool.map(_verify_loop, [float(SECONDS)] * CORES)
    return sum(counts) / SECONDS


def _argon2_parameters() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from argon2 import extract_parameters

    from app.core import security

    params = extract_parameters(security.hash_password("x"))
    return {
        "type": params.type.name.lower(),
        "memory_kib": params.memory_cost,
        "time_cost": params.time_cost,
        "parallelism": params.parallelism,
    }


def _timed(base: str, paths: list[str], headers: dict[str, str]) -> float:
    started = time.perf_counter()
    for path in paths:
        _http(base, "GET", path, headers)
    return (time.perf_counter() - started) * 1000 / len(paths)


def _scale(base: str, state: seed.State, repeat: int = 200) -> dict[str, Any]:
    """Median ms of a list page and of an email lookup, small vs big tenant, interleaved."""
    root = {"X-APIKEY": "gh_root_bench"}
    small = {**root, "X-Tenant-ID": state.small_tenant_id}
    big = {**root, "X-Tenant-ID": state.big_tenant_id}
    lookups = [f"/auth/user?email=user{n:08d}@example.com" for n in range(0, 1000, 97)]
    times: dict[str, list[float]] = {
        key: [] for key in ("list_small", "list_big", "mail_small", "mail_big")
    }
    for i in range(repeat + 20):
        sample = {
            "list_small": _timed(base, ["/api/v1/users?limit=50"], small),
            "list_big": _timed(base, ["/api/v1/users?limit=50"], big),
            "mail_small": _timed(base, [lookups[i % len(lookups)]], small),
            "mail_big": _timed(base, [lookups[i % len(lookups)]], big),
        }
        if i >= 20:  # the first rounds warm caches
            for key, value in sample.items():
                times[key].append(value)
    medians = {key: round(statistics.median(values), 3) for key, values in times.items()}
    medians["list_ratio"] = round(medians["list_big"] / medians["list_small"], 2)
    medians["mail_ratio"] = round(medians["mail_big"] / medians["mail_small"], 2)
    return medians


def _signin_script(tenant_id: str) -> str:
    body = json.dumps(
        {"grant_type": "password", "username": "bench@example.com", "password": seed.PASSWORD}
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
            f'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["X-Tenant-ID"] = "{tenant_id}"\n'
        )
    return lua.name


def measure_all(state: seed.State, env: dict[str, str]) -> dict[str, Any]:
    server = _granian(env) if SERVER == "granian" else _gunicorn(env)
    workers = _workers_of(server)
    peer = _peer(workers)
    try:
        base = server.url
        api = {"X-APIKEY": state.api_key, "X-Tenant-ID": state.tenant_id}
        signed = _http(
            base,
            "POST",
            "/oauth/token",
            {"X-Tenant-ID": state.tenant_id},
            {"grant_type": "password", "username": "bench@example.com", "password": seed.PASSWORD},
        )
        bearer = {"Authorization": f"Bearer {signed['access_token']}"}
        secret_path = f"/user/{state.user_id}/secrets/{state.secret_id}/value"
        reads: list[tuple[str, measure.Server, str, dict[str, str]]] = [
            ("healthz", server, "/healthz", {}),
            ("profile", server, "/user/profile", bearer),
            ("user_by_api_key", server, f"/user/{state.user_id}", api),
            ("secret_value", server, secret_path, api),
        ]
        if peer is not None:
            reads.insert(2, ("peer_users_me", peer[0], "/users/me", peer[1]))
        only = os.environ.get("BENCH_READS")  # a comma list of read names, for iterating
        if only:
            reads = [read for read in reads if read[0] in only.split(",")]
        runs: dict[str, list[measure.Run]] = {name: [] for name, *_ in reads}
        for _name, target, path, headers in reads:  # warm every worker and pool
            measure.wrk(target, path, seconds=1, connections=CONNECTIONS, headers=headers)
        for round_no in range(ROUNDS):
            for name, target, path, headers in reads:
                runs[name].append(
                    measure.wrk(
                        target, path, seconds=SECONDS, connections=CONNECTIONS, headers=headers
                    )
                )
            print(f"   round {round_no + 1}/{ROUNDS}: " + ", ".join(
                f"{name} {runs[name][-1].rps:.0f}/s {runs[name][-1].cpu_ms:.3f} ms CPU"
                for name in runs
            ), flush=True)  # fmt: skip
        # Kept connections give the floor's figure (wrk measured the capacity over kept
        # ones too); a new connection per request, as the soak sends them, is printed beside.
        open_loop = {
            name + suffix: _open_loop(target, path, headers, _median(runs[name], "rps"), kept)
            for name, target, path, headers in reads
            if name in OPEN_READS
            for suffix, kept in (("", True), (NEW_CONNECTION, False))
        }
        for name, row in open_loop.items():
            print(f"   {name} open-loop: {_open_loop_text(row)}", flush=True)
        script = _signin_script(state.tenant_id)
        if os.environ.get("BENCH_QUICK"):  # reads only: for iterating and bench/compare.py
            return _quick(server, script, runs, open_loop, only)
        written = _writes_during(
            lambda: measure.wrk(server, "/user/profile", seconds=3, connections=8, headers=bearer)
        )
        signins, bare = [], []
        for _ in range(ROUNDS):
            signins.append(
                measure.wrk(server, "/oauth/token", seconds=SECONDS, connections=8, script=script)
            )
            bare.append(_bare_argon2_per_second())
        scale = _scale(base, state)
    finally:
        server.stop()
        if peer is not None:
            peer[0].stop()
        seed.drop_queue(REDIS_URL)
    return {
        "server": _server_label(),
        "workers": workers,
        "reads": {name: _summary(values) for name, values in runs.items()},
        "open_loop": open_loop,
        "rows_written_by_reads": written,
        "signin": {
            **_summary(signins),
            "bare_argon2_per_second": round(statistics.median(bare), 1),
            "rounds_bare": [round(value, 1) for value in bare],
            "argon2": _argon2_parameters(),
        },
        "scale": scale,
    }


def _server_version() -> str:
    found = importlib.metadata.distributions(name=SERVER, path=[VARIANTS_PATH, *sys.path])
    return next(iter(found)).version


def _server_label() -> str:
    return SERVER + (f" + {JSON_VARIANT}" if JSON_VARIANT else "")


def _open_loop_text(row: dict[str, Any]) -> str:
    return (
        f"target {row['target_rps']:.0f}/s, achieved {row['achieved_rps']:.0f}/s "
        f"({row['dropped']} dropped), p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
        f"{row['cpu_ms_per_request']} ms CPU/request, {row['errors']} errors"
    )


def _quick(
    server: measure.Server,
    script: str,
    runs: dict[str, list[measure.Run]],
    open_loop: dict[str, Any],
    only: str | None,
) -> dict[str, Any]:
    """BENCH_QUICK: the reads (and, when BENCH_READS names it, sign-in), printed, and
    written to BENCH_QUICK_OUT when set; then stop."""
    if only and "signin" in only.split(","):
        for _ in range(ROUNDS):
            run = measure.wrk(server, "/oauth/token", seconds=SECONDS, connections=8, script=script)
            runs.setdefault("signin", []).append(run)
    figures = {
        "server": _server_label(),
        "load": round(os.getloadavg()[0], 2),
        "reads": {name: _summary(values) for name, values in runs.items()},
        "open_loop": open_loop,
    }
    for name, row in figures["reads"].items():
        print(f"   {name}: {row}")
    out = os.environ.get("BENCH_QUICK_OUT")
    if out:
        Path(out).write_text(json.dumps(figures, indent=2) + "\n")
    server.stop()
    raise SystemExit(0)


def _paired(numerators: list[float], denominators: list[float]) -> float:
    """The median of per-round ratios: a round's two figures were measured back to back,
    so they share that moment's load on a shared machine."""
    return round(statistics.median(n / d for n, d in zip(numerators, denominators, strict=True)), 2)


def _ratios(figures: dict[str, Any]) -> dict[str, Any]:
    reads = figures["reads"]
    profile = reads["profile"]
    signin = figures["signin"]
    out = {
        "profile_over_healthz": _paired(profile["rounds_rps"], reads["healthz"]["rounds_rps"]),
        "profile_cpu_over_healthz_cpu": _paired(
            profile["rounds_cpu_ms"], reads["healthz"]["rounds_cpu_ms"]
        ),
        "profile_cpu_ms": profile["cpu_ms_per_request"],
        "profile_p99_ms": profile["p99_ms"],
        "signin_over_argon2": _paired(signin["rounds_rps"], signin["rounds_bare"]),
        "list_big_over_small": figures["scale"]["list_ratio"],
        "lookup_big_over_small": figures["scale"]["mail_ratio"],
        "rows_written_by_reads": figures["rows_written_by_reads"],
    }
    if "profile" in figures["open_loop"]:
        out["profile_open_loop_p99_ms"] = figures["open_loop"]["profile"]["p99_ms"]
    if "peer_users_me" in reads:
        out["profile_over_peer"] = _paired(
            profile["rounds_rps"], reads["peer_users_me"]["rounds_rps"]
        )
        out["peer_cpu_over_profile_cpu"] = _paired(
            reads["peer_users_me"]["rounds_cpu_ms"], profile["rounds_cpu_ms"]
        )
    return out


# SPEC §9's floors and issue 29's goals. Each req/s ratio has its server-CPU ratio beside
# it: on an idle machine the one is the inverse of the other, and the CPU figure moves far
# less when other processes take the cores.
FLOORS = [
    ("profile_over_healthz", "`GET /user/profile` ÷ `GET /healthz` (req/s)", ">=", 0.5),
    ("profile_cpu_over_healthz_cpu", "server CPU per request: profile ÷ healthz", "", 0),
    ("profile_cpu_ms", "server CPU per request of the profile read (ms)", "<=", 0.7),
    ("profile_open_loop_p99_ms", "p99 of that read open-loop at 50 % of its req/s (ms)", "<", 10.0),
    ("profile_p99_ms", "p99 of that read closed-loop at 32 connections (ms)", "", 0),
    ("profile_over_peer", "same read ÷ fastapi-users `GET /users/me` (req/s)", ">=", 3.0),
    ("peer_cpu_over_profile_cpu", "server CPU per request: peer ÷ profile", ">=", 2.5),
    ("signin_over_argon2", "password sign-in ÷ bare argon2id verification", ">=", 0.9),
    ("list_big_over_small", "list page, big ÷ small tenant", "<=", 1.2),
    ("lookup_big_over_small", "email lookup, big ÷ small tenant", "<=", 1.2),
    ("rows_written_by_reads", "rows written by authenticated reads", "<=", 0),
]


def _holds(value: float, op: str, floor: float) -> bool:
    """Whether `value` meets the floor; a figure printed for reading only (no `op`) does."""
    return {"": True, ">=": value >= floor, "<": value < floor, "<=": value <= floor}[op]


def _markdown(result: dict[str, Any]) -> str:
    figures, ratios = result["figures"], result["ratios"]
    lines = [
        f"# Bench results ({result['when']})",
        "",
        f"{result['machine']}; {figures['server']} {result['server_version']} "
        f"({figures['workers']} workers); wrk {CONNECTIONS} "
        f"connections (closed loop), {ROUNDS} rounds of {SECONDS} s, medians; load average "
        f"at start {result['load_start']}, at end {result['load_end']}.",
        "",
        "Ratios are medians of per-round ratios (each round measures both sides back to back).",
        "",
        "| figure | measured | floor | holds |",
        "| --- | --- | --- | --- |",
    ]
    for key, label, op, floor in FLOORS:
        if key in ratios:
            holds = "yes" if _holds(ratios[key], op, floor) else "**no**"
            bound = f"{op} {floor}" if op else "—"
            lines.append(f"| {label} | {ratios[key]} | {bound} | {holds if op else '—'} |")
    lines += [
        "",
        "Closed loop (wrk, 32 connections: the p99 measures the machine's queue):",
        "",
        "| read | req/s (rounds) | p50 ms | p99 ms | server CPU ms/request (rounds; of "
        "which PostgreSQL) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in figures["reads"].items():
        rounds = ", ".join(f"{value:.0f}" for value in row["rounds_rps"])
        cpu_rounds = ", ".join(f"{value:.3f}" for value in row["rounds_cpu_ms"])
        lines.append(
            f"| {name} | {row['rps']:.0f} ({rounds}) | {row['p50_ms']} | {row['p99_ms']} | "
            f"{row['cpu_ms_per_request']} ({cpu_rounds}; {row['db_cpu_ms_per_request']}) |"
        )
    lines += [
        "",
        f"Open loop ({OPEN_LOAD:.0%} of the read's closed-loop req/s, {OPEN_SECONDS:.0f} s "
        "after 2 s of warm-up, the soak's driver over kept connections, one per client "
        f'thread; the rows marked "{NEW_CONNECTION[2:]}" open one per request, as the soak '
        "does):",
        "",
        "| read | target req/s | achieved req/s (dropped) | p50 ms | p99 ms | "
        "server CPU ms/request | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in figures["open_loop"].items():
        lines.append(
            f"| {name} | {row['target_rps']:.0f} | {row['achieved_rps']:.0f} "
            f"({row['dropped']}) | {row['p50_ms']} | {row['p99_ms']} | "
            f"{row['cpu_ms_per_request']} | {row['errors']} |"
        )
    signin, scale = figures["signin"], figures["scale"]
    argon = signin["argon2"]
    lines += [
        "",
        f"Sign-in: {signin['rps']} req/s (p99 {signin['p99_ms']} ms, "
        f"{signin['cpu_ms_per_request']} ms server CPU/request) against bare "
        f"argon2{argon['type']} verification {signin['bare_argon2_per_second']}/s on {CORES} "
        f"cores (m={argon['memory_kib']} KiB, t={argon['time_cost']}, "
        f"p={argon['parallelism']}).",
        "",
        f"Scale (median ms of single requests): list page {scale['list_small']} at 1 000 "
        f"users, {scale['list_big']} at {USERS:,}; email lookup {scale['mail_small']} / "
        f"{scale['mail_big']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    if os.environ.get("BENCH_RESET"):
        seed.reset(ADMIN_URL, REDIS_URL)
        return
    measure.ensure_wrk()
    load_start = os.getloadavg()[0]
    instance = tempfile.mkdtemp(prefix="gatehouse-bench-")
    env = seed.app_env(ADMIN_URL, REDIS_URL, instance)
    state = seed.prepare(ADMIN_URL, env, USERS)
    print(f"measuring ({ROUNDS} rounds of {SECONDS} s, {CONNECTIONS} connections) …", flush=True)
    figures = measure_all(state, env)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{CORES} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}",
        "server_version": _server_version(),
        "server_args": EXTRA_GRANIAN_ARGS if SERVER == "granian" else EXTRA_GUNICORN_ARGS,
        "load_start": round(load_start, 2),
        "load_end": round(os.getloadavg()[0], 2),
        "figures": figures,
        "ratios": _ratios(figures),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    text = _markdown(result)
    (RESULTS / "latest.md").write_text(text)
    print()
    print(text)
    ratios = result["ratios"]
    missed = [
        label
        for key, label, op, floor in FLOORS
        if key in ratios and not _holds(ratios[key], op, floor)
    ]
    print("every floor holds" if not missed else "floors missed: " + "; ".join(missed))


if __name__ == "__main__":
    main()
