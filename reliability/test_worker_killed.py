"""Worker killed mid-mail: SIGKILL while the Postmark stand-in holds the send open; the mail
is still delivered, and exactly once (SPEC §6: acks_late, atomic claim, requeue-stuck)."""

from __future__ import annotations

import os
import signal
import time

from reliability import stack
from reliability.deployment import Deployment

# The settings of the issue 22 finding: a 30 s send timeout and no lease of its own (an
# empty value is unset, so the harness's short lease goes too): the lease follows the
# timeout (30 + 5 s), and the killed send goes out about that long after the crash, not
# after the old fixed 300 s.
SETTINGS = {
    "MAIL_TIMEOUT_SECONDS": "30",
    "MAIL_REQUEUE_AFTER_SECONDS": "5",
    "MAIL_SENDING_LEASE_SECONDS": "",
}
EXPECTED_LEASE = 35
DELIVERY_BOUND = 120  # seconds after the new worker starts, as the finding measured


def _send_and_kill(deploy: Deployment, email: str, kill) -> str:  # noqa: ANN001
    """Ask for a reset mail, hold its send open, run `kill()`; the delivery row's id."""
    deploy.postmark.hold()
    answer = deploy.request_reset(email)
    assert answer.status == 200 and answer.json() == {"msg": "ok"}, answer
    assert deploy.postmark.wait_until_held(30), "the worker never called Postmark"
    [(delivery_id, status)] = deploy.query(
        "SELECT id, status FROM email_delivery WHERE to_address = %s", email
    )
    assert status == "sending"
    kill()
    deploy.postmark.release()
    deploy.wait_for(lambda: len(deploy.postmark.abandoned) >= 1, 10, "the held send to hang up")
    return delivery_id


def test_worker_killed_mid_mail(deployment: Deployment, report) -> None:  # noqa: ANN001
    deploy = deployment
    deploy.configure(**SETTINGS)
    deploy.start_api()
    worker = deploy.start_worker()
    deploy.start_beat()
    deploy.allow_reset_host()
    first = deploy.create_user("kill-child")
    second = deploy.create_user("kill-worker")

    # 1. Only the pool process that runs the task dies; the main worker process lives on.
    def kill_child() -> None:
        # Every pool process, so the busy one is certainly hit; the main process respawns them.
        children = worker.children()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        stack.wait_exited(children)
        report(f"injected: SIGKILL to the worker's {len(children)} pool processes mid-send")

    started = time.monotonic()
    first_id = _send_and_kill(deploy, first, kill_child)
    deploy.wait_for(
        lambda: [m for m in deploy.postmark.mails() if m.body["To"] == first],
        DELIVERY_BOUND,
        "the first mail to be delivered after the pool process died",
    )
    report(f"mail 1 delivered {time.monotonic() - started:.1f} s after the request")

    # 2. The whole worker dies (main process and pool); a new worker is started.
    def kill_worker() -> None:
        worker.kill(signal.SIGKILL)
        report(f"injected: SIGKILL to the whole worker (pid {worker.pid} and its pool) mid-send")

    started = time.monotonic()
    second_id = _send_and_kill(deploy, second, kill_worker)
    deploy.start_worker("worker2")
    new_worker_at = time.monotonic()
    report("a new worker started")
    deploy.wait_for(
        lambda: [m for m in deploy.postmark.mails() if m.body["To"] == second],
        DELIVERY_BOUND,
        "the second mail to be delivered by the new worker",
    )
    report(
        f"mail 2 delivered {time.monotonic() - started:.1f} s after the request, "
        f"{time.monotonic() - new_worker_at:.1f} s after the new worker started "
        f"(lease {EXPECTED_LEASE} s = MAIL_TIMEOUT_SECONDS 30 + 5)"
    )

    # Let every redelivery, retry and requeue run its course: nothing may send again.
    time.sleep(15)
    rows = dict(
        (i, (status, attempts))
        for i, status, attempts in deploy.query("SELECT id, status, attempts FROM email_delivery")
    )
    per_address = {
        address: sum(1 for m in deploy.postmark.mails() if m.body["To"] == address)
        for address in (first, second)
    }
    report(
        f"counted: Postmark accepted {per_address[first]} + {per_address[second]} mails, "
        f"{len(deploy.postmark.abandoned)} sends abandoned by the killed processes; "
        f"rows {rows[first_id]} and {rows[second_id]}"
    )
    assert per_address == {first: 1, second: 1}
    assert rows[first_id] == ("sent", 2) and rows[second_id] == ("sent", 2)
    assert len(deploy.postmark.abandoned) == 2
