"""The import benchmark (issue 24): `flask users import --format auth0` of pre-hashed
users, in process, against PostgreSQL. Prints users/s and the peak RSS for 100 000 users
and for BENCH_USERS (default 1 000 000); the target is ≥ 20 000 users/s and < 300 MB.

Every user carries the same bcrypt hash (made once): hashing is not what is measured, and
nothing is hashed at import. Each size runs in its own process (peak RSS is per process)
on its own fresh database `gatehouse_bench_import` (dropped afterwards); the file is
written before the clock starts. Knobs: BENCH_DATABASE_URL (admin URL), BENCH_REDIS_URL,
BENCH_USERS, BENCH_IMPORT_SIZES (comma-separated, overrides both sizes),
BENCH_IMPORT_BATCH (the CLI's --batch-size).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed  # noqa: E402  (bench/seed.py: database URLs and the service's bench environment)

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
DB_NAME = "gatehouse_bench_import"
TARGET_USERS_PER_SECOND = 20_000
TARGET_RSS_MB = 300


def _write_file(path: Path, count: int) -> None:
    import bcrypt

    hashed = bcrypt.hashpw(seed.PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    with path.open("w") as file:
        file.write("[")
        for n in range(count):
            user = {
                "email": f"user{n}@import.example.com",
                "email_verified": n % 2 == 0,
                "user_id": f"imported-{n}",
                "given_name": "Ada",
                "family_name": f"Lovelace {n}",
                "name": f"Ada Lovelace {n}",
                "user_metadata": {"plan": "free", "n": n},
                "password_hash": hashed,
            }
            file.write(("," if n else "") + "\n" + json.dumps(user))
        file.write("\n]\n")


def _one(count: int) -> None:
    """Child process: a fresh database, the file, then the timed import; prints JSON."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    instance = tempfile.mkdtemp()
    env = seed.app_env(ADMIN_URL, REDIS_URL, instance)
    env["DATABASE_URL"] = seed.db_url(ADMIN_URL, DB_NAME)
    # Production mode wants a 32-byte key (seed.app_env's is shorter).
    env["SECRET_KEY"] = "bench-import-secret-key-0123456789abcdef"
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=seed.ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    path = Path(instance) / "users.json"
    _write_file(path, count)
    os.environ.update(env)
    sys.path.insert(0, str(seed.ROOT))
    from app import create_app
    from app.core.db import db
    from app.tenants import service as tenant_service

    app = create_app()
    with app.app_context():
        tenant_id = tenant_service.create_tenant(name="import-bench").id
        db.session.commit()
    batch = os.environ.get("BENCH_IMPORT_BATCH")  # default: the CLI's
    args = ["users", "import", str(path), "--tenant", tenant_id, "--format", "auth0"]
    args += ["--batch-size", batch] if batch else []
    profiler = None
    if os.environ.get("BENCH_IMPORT_PROFILE"):  # where the time goes, on stderr
        bench_dir = str(Path(__file__).resolve().parent)
        sys.path[:] = [entry for entry in sys.path if entry != bench_dir]  # bench/profile.py
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu_before = time.process_time()
    started = time.perf_counter()
    result = app.test_cli_runner().invoke(args=args)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_before
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(
            os.environ.get("BENCH_IMPORT_PROFILE_SORT", "tottime")
        ).print_stats(35)
    if result.exit_code != 0:
        sys.exit(f"import failed: {result.output}")
    with app.app_context():
        db.engine.dispose()
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        rows = conn.execute("SELECT count(*) FROM user_account").fetchone()[0]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "users": count,
                "rows": rows,
                "seconds": round(seconds, 2),
                "users_per_second": round(count / seconds),
                "peak_rss_mb": round(peak_mb),
                # The importer's own CPU (PostgreSQL's backend is another process) and the
                # machine's load: on a shared 2-core machine wall time swings with it.
                "cpu_seconds": round(cpu_seconds, 2),
                "load_average": round(os.getloadavg()[0], 1),
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "summary": result.output.strip().splitlines()[-1],
            }
        )
    )
    path.unlink()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        _one(int(sys.argv[2]))
        return
    sizes_env = os.environ.get("BENCH_IMPORT_SIZES")
    if sizes_env:
        sizes = [int(size) for size in sizes_env.split(",") if size.strip()]
    else:
        sizes = sorted({100_000, int(os.environ.get("BENCH_USERS", "1000000"))})
    print("import of pre-hashed users (flask users import --format auth0, in process)")
    print(
        f"{'users':>10} {'seconds':>8} {'users/s':>9} {'peak RSS':>9} {'CPU s':>6} "
        f"{'load':>5}  target"
    )
    for size in sizes:
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(size)], capture_output=True, text=True
        )
        if child.returncode != 0:
            sys.exit(child.stderr or child.stdout)
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        assert figures["rows"] == size, figures
        meets = (
            figures["users_per_second"] >= TARGET_USERS_PER_SECOND
            and figures["peak_rss_mb"] < TARGET_RSS_MB
        )
        print(
            f"{size:>10,} {figures['seconds']:>8} {figures['users_per_second']:>9,} "
            f"{figures['peak_rss_mb']:>6} MB {figures['cpu_seconds']:>6} "
            f"{figures['load_average']:>5}  "
            f"{'met' if meets else 'MISSED'} (≥ {TARGET_USERS_PER_SECOND:,}/s, "
            f"< {TARGET_RSS_MB} MB)",
            flush=True,
        )


if __name__ == "__main__":
    main()
