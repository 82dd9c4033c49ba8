"""Secrets across key rotation (`flask secrets reencrypt`, the same as `flask keys
rotate-encryption`) and under concurrent writes: a
value written under an old key still reads, re-encryption moves it to the current key
without changing its version or ETag, and racing duplicate names give exactly one 201."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from app.core.db import db
from app.core.security import KeyRing
from app.core.tenancy import tenant_scope
from app.secrets.models import Secret
from tests import factories
from tests.factories import assert_error, property_rows, secret_rows

RACERS = 8


@pytest.fixture()
def rotation(deployment) -> Iterator[tuple[Flask, Flask, Flask, str, str, Callable]]:
    """Three processes of one deployment on a database of their own (rotation rewrites
    every encrypted value, signing keys included): ENCRYPTION_KEYS=k1, then k2,k1, then
    k2; a worker on their queue; at the end, wait until it has audited every value read."""
    k1, k2 = factories.new_encryption_key(), factories.new_encryption_key()
    app_k1 = deployment(ENCRYPTION_KEYS=k1)
    app_k21 = deployment(ENCRYPTION_KEYS=f"{k2},{k1}")
    app_k2 = deployment(ENCRYPTION_KEYS=k2)
    made: list[Any] = []

    def client_for(flask_app: Flask) -> Any:
        made.append(factories.counting_client(flask_app))
        return made[-1]

    with factories.celery_worker_for(app_k21):
        yield app_k1, app_k21, app_k2, k1, k2, client_for
        reads = sum(c.value_reads for c in made)
        assert factories.wait_for_value_read_audits(app_k21, reads) == reads


def key_id(key: str) -> str:
    return KeyRing([key]).current_key_id


def ciphertext(app: Flask, tenant_id: str, secret_id: str) -> str:
    with app.app_context(), tenant_scope(tenant_id):
        value = db.session.scalar(select(Secret.value_encrypted).where(Secret.id == secret_id))
        assert value is not None
        return value


def create(client, headers, user_id: str, name: str, value: str):
    response = client.post(
        f"/user/{user_id}/secrets", json={"name": name, "value": value}, headers=headers
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response


def value_of(client, headers, user_id: str, secret_id: str):
    return client.get(f"/user/{user_id}/secrets/{secret_id}/value", headers=headers)


def test_values_survive_key_rotation_and_reencryption(rotation):
    app_k1, app_k21, app_k2, k1, k2, client_for = rotation
    app = app_k1  # any process reads rows; the ciphertexts are what is compared
    tenant = factories.make_tenant(app_k1, "rotation")
    second = factories.make_tenant(app_k1, "rotation-two")
    user = factories.make_user(app_k1, tenant.id, user_id="rot")
    factories.make_user(app_k1, second.id, user_id="rot")

    old = create(client_for(app_k1), tenant.headers, user, "old", "written under k1 ✓")
    old_id, old_tag = old.get_json()["id"], old.headers["ETag"]
    other = create(client_for(app_k1), second.headers, user, "elsewhere", "tenant two")
    other_id = other.get_json()["id"]
    stored = ciphertext(app, tenant.id, old_id)
    assert stored.startswith(f"v1.{key_id(k1)}.")
    assert "written under k1" not in stored

    # k2 becomes current; k1 still decrypts what it wrote.
    client21 = client_for(app_k21)
    assert value_of(client21, tenant.headers, user, old_id).get_data(as_text=True) == (
        "written under k1 ✓"
    )
    new = create(client21, tenant.headers, user, "new", "written under k2")
    new_id = new.get_json()["id"]
    assert ciphertext(app, tenant.id, new_id).startswith(f"v1.{key_id(k2)}.")
    assert ciphertext(app, tenant.id, old_id) == stored  # nothing rewritten on read

    # Without k1, the old value cannot be read until it is re-encrypted.
    client2 = client_for(app_k2)
    failed = value_of(client2, tenant.headers, user, old_id)
    assert_error(failed, 500, "internal_error")
    assert "written under k1" not in failed.get_data(as_text=True)
    before = {row[0]: row for row in secret_rows(app, tenant.id)}

    result = app_k21.test_cli_runner().invoke(args=["secrets", "reencrypt"])
    assert result.exit_code == 0, result.output
    assert "user secrets 2," in result.output  # the old one of each tenant
    again = app_k21.test_cli_runner().invoke(args=["secrets", "reencrypt"])
    assert again.exit_code == 0 and "user secrets 0," in again.output

    rewritten = ciphertext(app, tenant.id, old_id)
    assert rewritten.startswith(f"v1.{key_id(k2)}.") and rewritten != stored
    assert ciphertext(app, second.id, other_id).startswith(f"v1.{key_id(k2)}.")
    after = {row[0]: row for row in secret_rows(app, tenant.id)}
    for secret_id in (old_id, new_id):
        # id, user, name, version, created_at, updated_at unchanged; only the ciphertext moved
        assert after[secret_id][:3] + after[secret_id][4:] == (
            before[secret_id][:3] + before[secret_id][4:]
        )
    meta = client2.get(f"/user/{user}/secrets/{old_id}", headers=tenant.headers)
    assert meta.status_code == 200
    assert meta.headers["ETag"] == old_tag and meta.get_json()["version"] == 1
    assert meta.get_json() == old.get_json()

    # k1 removed: everything reads.
    assert value_of(client2, tenant.headers, user, old_id).get_data(as_text=True) == (
        "written under k1 ✓"
    )
    assert value_of(client2, tenant.headers, user, new_id).get_data(as_text=True) == (
        "written under k2"
    )
    assert value_of(client2, second.headers, user, other_id).get_data(as_text=True) == (
        "tenant two"
    )


def test_reencrypt_in_small_batches_covers_every_secret(rotation):
    app_k1, app_k21, app_k2, k1, k2, client_for = rotation
    tenant = factories.make_tenant(app_k1, "batches")
    user = factories.make_user(app_k1, tenant.id, user_id="many")
    client1 = client_for(app_k1)
    ids = [
        create(client1, tenant.headers, user, f"s{i}", f"value {i}").get_json()["id"]
        for i in range(5)
    ]
    result = app_k21.test_cli_runner().invoke(
        args=["keys", "rotate-encryption", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "user secrets 5," in result.output
    client2 = client_for(app_k2)
    for i, secret_id in enumerate(ids):
        assert ciphertext(app_k1, tenant.id, secret_id).startswith(f"v1.{key_id(k2)}.")
        response = value_of(client2, tenant.headers, user, secret_id)
        assert response.status_code == 200 and response.get_data(as_text=True) == f"value {i}"


# --- concurrent duplicate names against a real server --------------------------------------


@pytest.fixture()
def live_server(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("kind", "rows"), [("secrets", secret_rows), ("properties", property_rows)]
)
def test_concurrent_duplicate_creates_give_one_201(app, tenant, live_server, kind, rows):
    user = factories.make_user(app, tenant.id, user_id="racer")
    start = threading.Barrier(RACERS)
    target = f"{live_server}/user/{user}/{kind}"

    def attempt(i: int) -> requests.Response:
        start.wait(timeout=10)
        body = {"name": "contested", "value": f"attempt-{i}"}
        return requests.post(target, json=body, headers=tenant.headers, timeout=30)

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        responses = list(pool.map(attempt, range(RACERS)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (RACERS - 1), [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["status"] == 409
    stored = rows(app, tenant.id)
    assert len(stored) == 1
    winner = next(r for r in responses if r.status_code == 201).json()
    assert stored[0][0] == winner["id"] and stored[0][2] == "contested"
