"""Worker killed mid-import (issue 24, bad input): an Auth0 import job of 150,000 users is
uploaded over plain HTTP, and the worker running it is SIGKILLed while a batch's users are
written (COPYed) but not committed. The database then holds exactly the committed batches
(users == records_done), and the job resumes from that point with no duplicate and no
half-written user. The whole worker is killed first (a new worker takes the job once
beat's `requeue-stuck` finds it silent for IMPORT_STALE_SECONDS), then, in a second tenant,
only its pool processes (the main process lives and, the task being
`reject_on_worker_lost`, queues it again at once)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
import urllib.parse
import uuid
from typing import Any

import bcrypt
import psycopg

from reliability import stack
from reliability.deployment import Deployment

USERS = 150_000  # measured: about 10 s of the worker's time on the 2-core machine
PASSWORD = "imported-password-1"
SETTINGS = {
    "IMPORT_STALE_SECONDS": "5",
    "MAIL_REQUEUE_INTERVAL_SECONDS": "1",  # beat runs `requeue-stuck` every second
}
COMPLETION_BOUND = 120  # seconds from the kill until the job must be completed

# One bcrypt hash shared by every user: hashing 150,000 passwords would take hours, and
# the import never hashes (it stores the foreign hash for the first sign-in to check).
SHARED_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def users_file(prefix: str, count: int) -> bytes:
    """An Auth0 bulk-import file: `count` users with unique emails and one bcrypt hash."""
    return json.dumps(
        [
            {
                "email": f"{prefix}-{n}@example.com",
                "email_verified": True,
                "given_name": f"User {n}",
                "password_hash": SHARED_HASH,
            }
            for n in range(count)
        ]
    ).encode()


def connection_id(deploy: Deployment, key: str) -> str:
    answer = deploy.http("GET", "/api/v2/connections", headers={"Authorization": f"Bearer {key}"})
    assert answer.status == 200, answer
    [connection] = answer.json()
    return str(connection["id"])


def upload(deploy: Deployment, key: str, content: bytes) -> dict[str, Any]:
    """`POST /api/v2/jobs/users-imports` as plain multipart HTTP; the job it answers."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="connection_id"\r\n\r\n'
        f"{connection_id(deploy, key)}\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="users"; filename="users.json"'
        "\r\nContent-Type: application/json\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    url = urllib.parse.urlsplit(deploy.apis[0].extra["base"])
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        connection.request(
            "POST",
            "/api/v2/jobs/users-imports",
            body=body,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    assert response.status == 201, (response.status, answer[:300])
    return dict(json.loads(answer))


def runs(worker: Any, since: int) -> tuple[int, int]:
    """(import task messages the worker received, `requeue-stuck` runs that queued an
    import job again), from its log past the first `since` characters."""
    log = worker.output()[since:]
    received = len(re.findall(r"portability\.run_import\[[^\]]+\] received", log))
    requeued = len(re.findall(r"requeue_stale_imports\[[^\]]+\] succeeded in \S+: [1-9]", log))
    return received, requeued


def state(deploy: Deployment, tenant_id: str, job_id: str) -> tuple[str, int, int, int]:
    """(status, records_done, failed, users in the tenant), read in one snapshot so a
    commit landing between two reads cannot make them disagree."""
    [row] = deploy.query(
        "SELECT j.status, j.records_done, j.failed,"
        " (SELECT count(*) FROM user_account u WHERE u.tenant_id = j.tenant_id)"
        " FROM transfer_job j WHERE j.id = %s AND j.tenant_id = %s",
        job_id,
        tenant_id,
    )
    return row  # type: ignore[return-value]


def mid_batch(deploy: Deployment, tenant_id: str, job_id: str) -> tuple[int, int]:
    """Wait until the worker has committed some batches of the job (not all) and is
    caught with the next batch's users written but not committed: its database session
    in a transaction whose last statement is the COPY of the new users. The backend's
    pid and records_done then."""
    with psycopg.connect(deploy.database_url, autocommit=True) as conn:

        def check() -> tuple[int, int] | None:
            status, done, _, _ = state(deploy, tenant_id, job_id)
            if status not in ("pending", "processing"):  # ended before the kill: fail now
                return (0, done)
            if status != "processing" or done < USERS // 10:
                return None
            writing = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND xact_start IS NOT NULL AND query LIKE 'COPY user_account%%'"
            ).fetchall()
            return (writing[0][0], done) if writing else None

        found: tuple[int, int] = stack.wait_until(
            check, 60, "the worker to be caught mid-batch", interval=0.005
        )
    assert found[0] and found[1] < USERS, f"the job ended before the kill: {found}"
    return found


def check_finished(
    deploy: Deployment, tenant_id: str, job_id: str, prefix: str, key: str
) -> dict[str, Any]:
    """Every user exactly once, the summary exact, and an imported user signs in."""
    [(users,)] = deploy.query("SELECT count(*) FROM user_account WHERE tenant_id = %s", tenant_id)
    duplicates = deploy.query(
        "SELECT email_normalized, count(*) FROM user_account WHERE tenant_id = %s"
        " GROUP BY email_normalized HAVING count(*) > 1 LIMIT 5",
        tenant_id,
    )
    [(unexpected,)] = deploy.query(
        "SELECT count(*) FROM user_account WHERE tenant_id = %s AND email NOT LIKE %s",
        tenant_id,
        f"{prefix}-%@example.com",
    )
    [(done, errors)] = deploy.query(
        "SELECT records_done, (SELECT count(*) FROM transfer_error e WHERE e.job_id = j.id)"
        " FROM transfer_job j WHERE j.id = %s",
        job_id,
    )
    answer = deploy.http(
        "GET", f"/api/v2/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status == 200, answer
    job = answer.json()
    assert job["status"] == "completed", job
    assert job["summary"] == {"inserted": USERS, "updated": 0, "failed": 0, "total": USERS}, job
    [(incomplete,)] = deploy.query(
        "SELECT count(*) FROM user_account WHERE tenant_id = %s AND (password_hash IS NULL"
        " OR first_name IS NULL OR NOT email_verified)",
        tenant_id,
    )
    assert (users, duplicates, unexpected, incomplete) == (USERS, [], 0, 0)
    assert (done, errors) == (USERS, 0)
    # The first and last users of the file (either side of the kill) sign in.
    for n in (0, USERS - 1):
        signed = deploy.http(
            "POST",
            "/oauth/token",
            headers={"X-Tenant-ID": tenant_id},
            form={
                "grant_type": "password",
                "username": f"{prefix}-{n}@example.com",
                "password": PASSWORD,
            },
        )
        assert signed.status == 200, signed
    return job


def run_killed(
    deploy: Deployment,
    report: Any,
    *,
    tenant_id: str,
    key: str,
    prefix: str,
    kill: Any,
    worker: Any,
) -> None:
    """Upload a job, run `kill()` part-way, check the database at that instant, then take
    `worker` (a Service, or a function starting a new one) to resume it; wait for the job
    to complete, and report the figures and what that worker logged."""
    content = users_file(prefix, USERS)
    since = 0 if callable(worker) else len(worker.output())
    started = time.monotonic()
    job = upload(deploy, key, content)
    uploaded = time.monotonic() - started
    backend, seen_done = mid_batch(deploy, tenant_id, job["id"])
    before_kill = time.monotonic() - started
    kill()
    killed_at = time.monotonic()
    # The killed worker's database session ends with it (PostgreSQL reads EOF and rolls
    # its transaction back); then exactly the committed batches are there, none half.
    stack.wait_until(
        lambda: not deploy.query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", backend),
        10,
        "the killed worker's database session to end",
    )
    status, done, failed, users = state(deploy, tenant_id, job["id"])
    # The batch caught written is rolled back, unless its commit slipped in between the
    # look and the signal (a few milliseconds), or a respawned pool process already
    # resumed; either way no half of a batch is left.
    caught = "rolled back" if done == seen_done else f"records_done {seen_done} seen before"
    report(
        f"{USERS} users ({len(content) / 1e6:.1f} MB) uploaded in {uploaded:.1f} s; killed "
        f"{before_kill:.1f} s after the upload began with the next batch's users COPYed, "
        f"not committed ({caught}); records_done then {done}, {users} users, "
        f"{failed} rejected"
    )
    assert status == "processing" and 0 < done < USERS, (status, done)
    assert users == done - failed, (users, done, failed)
    if callable(worker):
        worker = worker()

    def resumed() -> bool:
        return state(deploy, tenant_id, job["id"])[1] > done

    stack.wait_until(resumed, COMPLETION_BOUND, "the job to resume", interval=0.05)
    resumed_after = time.monotonic() - killed_at

    def ended() -> str | None:
        status = state(deploy, tenant_id, job["id"])[0]
        return status if status in ("completed", "failed") else None

    ending = stack.wait_until(ended, COMPLETION_BOUND, "the job to end", interval=0.1)
    assert ending == "completed", state(deploy, tenant_id, job["id"])
    finished_after = time.monotonic() - killed_at
    check_finished(deploy, tenant_id, job["id"], prefix, key)
    report(
        f"resumed (records_done past {done}) {resumed_after:.1f} s after the kill, "
        f"completed {finished_after:.1f} s after it; {USERS} users, 0 duplicates, "
        f"summary inserted {USERS}, failed 0"
    )
    received, requeued = runs(worker, since)
    report(
        f"the resuming worker's log for this job: import task messages received: "
        f"{received}; `requeue-stuck` runs that queued it again: {requeued}"
    )


def test_worker_killed_mid_import(deployment: Deployment, report) -> None:  # noqa: ANN001
    deploy = deployment
    deploy.configure(**SETTINGS)
    deploy.start_api()
    worker = deploy.start_worker()
    deploy.start_beat()

    # 1. The whole worker (main process and pool) dies; a new worker is started, and
    # beat's `requeue-stuck` queues the job again once its heartbeat is 5 s old.
    def kill_worker() -> None:
        worker.kill(signal.SIGKILL)
        report(f"injected: SIGKILL to the whole worker (pid {worker.pid} and its pool)")

    run_killed(
        deploy,
        report,
        tenant_id=deploy.tenant_id,
        key=deploy.key,
        prefix="whole",
        kill=kill_worker,
        worker=lambda: deploy.start_worker("worker2"),
    )

    # 2. In a second tenant, only the pool processes die; the main process lives on.
    second = stack.flask(deploy.env, "tenants", "create", "reliability-pool").strip()
    created = stack.flask(deploy.env, "keys", "create", second)
    second_key = created.split("key: ", 1)[1].split()[0]
    new_worker = next(s for s in deploy.services if s.name == "worker2")

    def kill_pool() -> None:
        children = new_worker.children()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        stack.wait_exited(children)
        report(f"injected: SIGKILL to the worker's {len(children)} pool processes")

    run_killed(
        deploy,
        report,
        tenant_id=second,
        key=second_key,
        prefix="pool",
        kill=kill_pool,
        worker=new_worker,
    )
