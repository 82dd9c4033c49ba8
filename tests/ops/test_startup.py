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
        ["celery", "-A", "worker", "worker", "--pool", "solo"],
        ["celery", "-A", "worker", "beat"],
    ],
    ids=["api", "worker", "beat"],
)
def test_the_api_worker_and_beat_refuse_a_bad_setting(app: Flask, command: list[str]) -> None:
    env = factories.process_env(app, RATELIMIT_SIGNIN_PER_ACCOUNT="often")
    _refused(factories.run_command(command, env), "RATELIMIT_SIGNIN_PER_ACCOUNT")


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
