"""Schema fuzzing: schemathesis drives every operation of the app's own `/openapi.json`
in-process (WSGI) against the real PostgreSQL and Redis, as an API key, as the root key and
as a user token, and every answer must be one the document describes.

`make test` runs a few examples per operation with a fixed seed; `make fuzz` runs many
more (FUZZ_EXAMPLES) and prints the counts.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import factories
from tests.conftest import ROOT_KEY

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
SEED = int(os.environ.get("FUZZ_SEED", "20261130"))
PASSWORD = "correct horse battery"
CHECKS = {
    "server_error": not_a_server_error,
    "schema_violation": response_schema_conformance,
    "undocumented_status": status_code_conformance,
    "undocumented_content_type": content_type_conformance,
}


@dataclass
class Tally:
    """What one fuzzing run found: counts by check, and the operations that failed."""

    cases: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    operations: dict[str, set[str]] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, check: str, operation: str, detail: str) -> None:
        self.failures[check] += 1
        self.operations.setdefault(operation, set()).add(check)
        self.examples.setdefault(f"{operation} {check}", detail[:600])


def _run_operation(operation: Any, headers: dict[str, str], path: dict[str, str], tally: Tally):
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        params = {k: v for k, v in path.items() if k in _path_names(operation)}
        try:
            strategy = operation.as_strategy(
                generation_mode=mode, headers=dict(headers), path_parameters=params or None
            )
        except Exception:  # an operation with nothing to break in negative mode
            continue

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES,
            database=None,
            deadline=None,
            derandomize=False,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            response = case.call()
            tally.cases += 1
            for name, check in CHECKS.items():
                try:
                    case.validate_response(response, checks=[check])
                except FailureGroup as exc:
                    tally.add(name, operation.label, str(exc))

        try:
            fuzz()
        except Unsatisfiable:
            pass  # nothing to generate in this mode (no parameters, or no way to break them)
        except Exception as exc:  # generation trouble is a finding too, not a crash
            tally.add("generation_error", operation.label, repr(exc))


def _path_names(operation: Any) -> set[str]:
    return {p.name for p in operation.path_parameters}


def fuzz_app(app: Flask, headers: dict[str, str], path: dict[str, str]) -> Tally:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    tally = Tally()
    for result in schema.get_all_operations():
        operation = result.ok()
        _run_operation(operation, headers, path, tally)
    return tally


def _report(label: str, tally: Tally) -> str:
    lines = [
        f"[{label}] cases={tally.cases} operations_with_failures={len(tally.operations)} "
        + " ".join(f"{k}={tally.failures.get(k, 0)}" for k in (*CHECKS, "generation_error"))
    ]
    for key, detail in sorted(tally.examples.items()):
        lines.append(f"  {key}: {detail.splitlines()[0] if detail else ''}")
    return "\n".join(lines)


@pytest.fixture()
def world(app: Flask, tenant: factories.TenantHandle, client: Any) -> dict[str, Any]:
    username = "fuzzer"
    user_id = factories.make_user(
        app, tenant.id, user_id="fuzz-user", username=username, password=PASSWORD
    )
    return {"tenant": tenant, "user_id": user_id, "username": username}


@pytest.mark.parametrize("who", ["api_key", "root_key", "user_token"])
def test_every_answer_is_documented(app, client, world, celery_worker, who, capsys):
    tenant = world["tenant"]
    if who == "api_key":
        headers = tenant.headers
    elif who == "root_key":
        headers = {"X-APIKEY": ROOT_KEY, "X-Tenant-ID": tenant.id}
    else:
        token = factories.sign_in(client, tenant.id, world["username"], PASSWORD)
        headers = {**factories.bearer_headers(token["access_token"]), "X-Tenant-ID": tenant.id}
    path = {
        "user_id": world["user_id"],
        "userId": world["user_id"],
        "user_name": world["username"],
        "userName": world["username"],
        "tenant_id": tenant.id,
        "id": tenant.id,
    }
    tally = fuzz_app(app, headers, path if uuid.uuid4().int % 1 == 0 else {})
    with capsys.disabled():
        print("\n" + _report(who, tally))
    assert not tally.failures, _report(who, tally)
