"""Start-up of the API (gunicorn), the worker, beat and the CLI: a bad setting or a key
ring that cannot open the instance's data stops the process with one line naming the
variable and a non-zero status, never a traceback (issue 17, findings 3 and 5)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from flask import Flask

from tests import factories

CLI = ["flask", "--app", "wsgi", "tenants", "list"]


def _refused(result, variable: str) -> str:
    """The single stderr line of a refused start-up; it names `variable`."""
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert "Traceback" not in output, output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("ConfigError:")]
    assert variable in line, line
    return line


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RATELIMIT_SIGNIN_PER_IP", "lots", "must be a rate limit like"),
        ("DATABASE_URL", "mysql://me:hunter2@db/gatehouse", "PostgreSQL or SQLite URL"),
        ("ACCESS_TOKEN_TTL", "15m", "must be an integer, got '15m'"),
    ],
)
def test_a_bad_setting_stops_the_cli_with_one_line(
    app: Flask, variable: str, value: str, says: str
) -> None:
    """Finding 5's three cases; every other setting's check is in test_config.py."""
    result = factories.run_command(CLI, factories.process_env(app, **{variable: value}))
    line = _refused(result, variable)
    assert says in line
    assert "hunter2" not in result.stderr  # a password in a URL is never echoed


@pytest.mark.parametrize(
    "command",
    [
        ["gunicorn", "-b", "127.0.0.1:0", "wsgi:app"],
        # Granian as `make test-reliability RELIABILITY_SERVER=granian` serves (issue 29):
        # the launcher checks before it imports granian, so this runs without it.
        ["reliability.granian_serve", "--host", "127.0.0.1", "--port", "0", "wsgi:app"],
        ["celery", "-A", "worker", "worker", "--pool", "solo"],
        ["celery", "-A", "worker", "beat"],
    ],
    ids=["api", "api-granian-launcher", "worker", "beat"],
)
def test_the_api_worker_and_beat_refuse_a_bad_setting(app: Flask, command: list[str]) -> None:
    env = factories.process_env(app, RATELIMIT_SIGNIN_PER_ACCOUNT="often")
    _refused(factories.run_command(command, env), "RATELIMIT_SIGNIN_PER_ACCOUNT")


@pytest.mark.parametrize(
    "command",
    [
        ["gunicorn", "-b", "127.0.0.1:0", "wsgi:app"],
        ["reliability.granian_serve", "--port", "0", "wsgi:app"],
    ],
    ids=["gunicorn", "granian-launcher"],
)
def test_a_refused_start_leaves_no_metrics_folder(
    app: Flask, tmp_path: Path, command: list[str]
) -> None:
    """The Prometheus folder the server's master made for this run goes with a refused
    start (gunicorn's on_exit does not run after on_starting exits: each refusal left an
    empty /tmp/gatehouse-metrics-* behind)."""
    env = factories.process_env(app, RATELIMIT_SIGNIN_PER_ACCOUNT="often", TMPDIR=str(tmp_path))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    _refused(factories.run_command(command, env), "RATELIMIT_SIGNIN_PER_ACCOUNT")
    assert list(tmp_path.iterdir()) == []


def test_a_key_ring_that_cannot_open_the_data_stops_every_process(deployment) -> None:
    """Finding 3: a `.env` with fresh keys made the existing instance 500 on every sign-in
    while /readyz said ok. Now start-up names the key and /readyz reports it."""
    original = deployment()
    original.test_client().get("/.well-known/jwks.json")  # the first signing key is made
    wrong = deployment(ENCRYPTION_KEYS=factories.new_encryption_key())
    env = factories.process_env(wrong)
    for command in (CLI, ["celery", "-A", "worker", "beat"]):
        line = _refused(factories.run_command(command, env), "ENCRYPTION_KEYS")
        assert "cannot open this instance's data" in line
        assert "put the key that made it back" in line
    ready = wrong.test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["keyring"] == "cannot open the current signing key"
    assert ready.get_json()["checks"]["database"] == "ok"
    # The right ring starts.
    assert factories.run_command(CLI, factories.process_env(original)).returncode == 0


def test_db_upgrade_runs_on_an_empty_database(tmp_path: Path, app: Flask) -> None:
    """The start-up check needs the schema; before the first migration it stays quiet."""
    env = factories.process_env(
        app, DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}", INSTANCE_PATH=str(tmp_path)
    )
    upgraded = factories.run_command(["flask", "--app", "wsgi", "db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    listed = factories.run_command(CLI, env)
    assert listed.returncode == 0 and listed.stdout == ""


def test_gunicorn_serves_with_good_settings(app: Flask) -> None:
    """The control case of the refusals above: the same command starts and answers."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=factories.PROJECT_ROOT,
        env=factories.process_env(app),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline, body = time.monotonic() + 30, None
        while body is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.2)  # not listening yet
        assert body is not None, server.stderr.read().decode() if server.stderr else ""
        assert '"keyring":"ok"' in body
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_served_app_is_kept_out_of_the_garbage_collector(app: Flask) -> None:
    """wsgi.py freezes what the app is built of: a full collection in a serving worker then
    walks only what requests left behind, not the ~200 000 objects of the app itself (each
    such walk stopped every request thread of the worker for tens of milliseconds)."""
    import subprocess

    probe = "import gc, wsgi; print(gc.get_freeze_count(), len(gc.get_objects()))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=factories.PROJECT_ROOT,
        env=factories.process_env(app),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    frozen, tracked = (int(n) for n in result.stdout.split())
    assert frozen > 50_000, result.stdout
    assert tracked < frozen // 10, result.stdout  # what is left for the collector is small


DEAD_DATABASE = "postgresql://postgres@127.0.0.1:1/gatehouse"  # nothing listens on port 1
UNREACHABLE = "DATABASE_URL: cannot connect to the database gatehouse at 127.0.0.1:1: "


@pytest.mark.parametrize(
    "command",
    [["flask", "--app", "wsgi", "db", "upgrade"], CLI],
    ids=["db-upgrade", "cli"],
)
def test_an_unreachable_database_is_one_line_from_the_cli(app: Flask, command: list[str]) -> None:
    """Issue 22: `flask db upgrade` and the CLI printed ~150 lines of traceback."""
    result = factories.run_command(command, factories.process_env(app, DATABASE_URL=DEAD_DATABASE))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"Error: {UNREACHABLE}Connection refused"], result.stderr


def test_the_server_says_in_one_line_that_the_database_cannot_be_reached(
    app: Flask, tmp_path: Path
) -> None:
    """The same line, logged once by gunicorn's master at start; the server still serves
    (/healthz) and /readyz answers 503 until the database is back."""
    import urllib.error
    import urllib.request

    log = tmp_path / "gunicorn.log"
    env = factories.process_env(app, DATABASE_URL=DEAD_DATABASE)
    with factories.gunicorn(env, log, "--workers", "2") as base:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"{base}/readyz", timeout=10)
        assert answer.value.code == 503
    output = log.read_text()
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if UNREACHABLE in line]
    assert line.endswith("Connection refused; serving anyway, /readyz answers 503 until it is back")


def test_a_relative_sqlite_path_is_one_file_for_migrate_and_serve(
    app: Flask, tmp_path: Path
) -> None:
    """Issue 22: `DATABASE_URL=sqlite:///relative.db` made an empty file in the working
    directory and migrated another in the instance folder ("no such table" next). Both
    commands now use `<instance>/relative.db`, whatever the working directory."""
    instance, elsewhere = tmp_path / "instance", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = factories.process_env(
        app, DATABASE_URL="sqlite:///relative.db", INSTANCE_PATH=str(instance)
    )
    upgrade = factories.run_command(["flask", "--app", "wsgi", "db", "upgrade"], env, cwd=tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr
    created = factories.run_command(
        ["flask", "--app", "wsgi", "tenants", "create", "relco"], env, cwd=elsewhere
    )
    assert created.returncode == 0, created.stderr
    listed = factories.run_command(CLI, env, cwd=tmp_path)
    assert listed.returncode == 0 and "relco" in listed.stdout, listed.stderr
    assert sorted(p.name for p in tmp_path.rglob("*.db")) == ["relative.db"]
    assert (instance / "relative.db").stat().st_size > 0


def test_flask_run_says_the_same_line_when_the_database_cannot_be_reached(
    app: Flask, tmp_path: Path
) -> None:
    """`make run` serves with `flask run`: the same one line at start, then it serves."""
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "run.log"
    env = factories.process_env(app, DATABASE_URL=DEAD_DATABASE)
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", str(port)],
            cwd=factories.PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert factories.wait_until(lambda: "Running on" in log.read_text(), 60), log.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
    output = log.read_text()
    assert "Traceback" not in output
    assert len([line for line in output.splitlines() if UNREACHABLE in line]) == 1, output
