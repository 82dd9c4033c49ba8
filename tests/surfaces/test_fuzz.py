"""Schema fuzzing: schemathesis drives every operation of the app's own `/openapi.json`
in-process (WSGI) against the real PostgreSQL, Redis and worker, as a tenant API key, as
the root key and as a user token (with the tenant header), and every answer must be one
the document describes: no 5xx, bodies that match the documented schema (the surface's own
error shape included), documented statuses, content types and headers only, and no
request the document calls invalid accepted.

`make test` runs a few examples per operation with a fixed seed; `make fuzz` runs more
(FUZZ_EXAMPLES, FUZZ_SEED) and prints the counts.
"""

from __future__ import annotations

import os
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
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import factories
from tests.conftest import ROOT_KEY
from tests.factories import PASSWORD

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
SEED = int(os.environ.get("FUZZ_SEED", "20261130"))
CHECKS = {
    "server_errors": not_a_server_error,
    "schema_violations": response_schema_conformance,
    "undocumented_statuses": status_code_conformance,
    "undocumented_content_types": content_type_conformance,
    "missing_headers": response_headers_conformance,
    # Data the document forbids must be refused: its constraints are the server's.
    "invalid_data_accepted": negative_data_rejection,
}
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@dataclass
class Tally:
    """What one fuzzing run found: cases sent, failures by check, one example of each."""

    operations: int = 0
    cases: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    failed_operations: set[str] = field(default_factory=set)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, check: str, operation: str, detail: str) -> None:
        self.failures[check] += 1
        self.failed_operations.add(operation)
        self.examples.setdefault(f"{operation} [{check}]", detail)

    def report(self, label: str) -> str:
        counts = " ".join(f"{name}={self.failures.get(name, 0)}" for name in CHECKS)
        lines = [
            f"[{label}] operations={self.operations} cases={self.cases} "
            f"operations_failing={len(self.failed_operations)} {counts}"
        ]
        lines += [f"  {key}:\n{text[:1500]}" for key, text in sorted(self.examples.items())]
        return "\n".join(lines)


@dataclass
class Caller:
    """How one run authenticates, and the known ids it may put in paths."""

    app: Flask
    tenant: factories.TenantHandle
    who: str
    serial: int = 0

    def fresh(self) -> tuple[dict[str, str], dict[str, str]]:
        """Headers and path ids for the next operation: a new user (earlier operations
        may have deleted the last one or changed its password) and fresh limits."""
        self.app.extensions["gatehouse.ratelimits"].reset()
        self.serial += 1
        name = f"fuzz-{self.serial}"
        factories.make_user(
            self.app, self.tenant.id, user_id=name, username=name, password=PASSWORD
        )
        if self.who == "api_key":
            headers = dict(self.tenant.headers)
        elif self.who == "root_key":
            headers = {"X-APIKEY": ROOT_KEY, "X-Tenant-ID": self.tenant.id}
        else:
            token = factories.sign_in(self.app.test_client(), self.tenant.id, name, PASSWORD)
            headers = {
                **factories.bearer(token["access_token"]),
                "X-Tenant-ID": self.tenant.id,
            }
        # Platform operations change the tenant they name: give them one of their own.
        target = factories.make_tenant(self.app, name).id
        known = {"user_id": name, "user_name": name, "tenant_id": target}
        return headers, known


def _fuzz_operation(operation: Any, caller: Caller, tally: Tally) -> None:
    names = {parameter.name for parameter in operation.path_parameters}
    headers, known = caller.fresh()
    # Generated ids mostly meet 404s; known ones reach validation and the services.
    paths = [{}, {k: v for k, v in known.items() if k in names}] if names else [{}]
    for path in paths:
        for mode in MODES:
            _fuzz_cases(operation, mode, headers, path, tally)


# Literal routes win over a path parameter: `/users/me` and `/users/current` are the me
# and accounts "current user" operations (documented on their own), not a user named so.
RESERVED_PATH_VALUES = frozenset({"me", "current", "profile"})


def _not_another_route(case: Any) -> bool:
    return not RESERVED_PATH_VALUES & set((case.path_parameters or {}).values())


def _fuzz_cases(
    operation: Any, mode: Any, headers: dict[str, str], path: dict[str, str], tally: Tally
) -> None:
    strategy = operation.as_strategy(
        generation_mode=mode, headers=dict(headers), path_parameters=path or None
    ).filter(_not_another_route)

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call()
        tally.cases += 1
        for name, check in CHECKS.items():
            try:
                case.validate_response(response, checks=[check])
            except FailureGroup as exc:
                tally.add(name, operation.label, str(exc))

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to vary in this mode (no parameters, or none that can be broken)


def fuzz(app: Flask, caller: Caller) -> Tally:
    """Every operation of the app's document, fuzzed as `caller`."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    tally = Tally()
    for result in schema.get_all_operations():
        tally.operations += 1
        _fuzz_operation(result.ok(), caller, tally)
    return tally


@pytest.mark.parametrize("who", ["api_key", "root_key", "user_token"])
def test_every_answer_is_documented(app, tenant, celery_worker, who, capsys):
    tally = fuzz(app, Caller(app, tenant, who))
    with capsys.disabled():
        print("\n" + tally.report(who).splitlines()[0])
    assert tally.operations >= 50
    assert tally.cases > tally.operations
    assert not tally.failures, tally.report(who)
