"""Soak: mixed traffic at about 80 % of the capacity measured here for that same mix, for
five minutes. No 5xx, every acknowledged write read back, every reset mail delivered
once, and each API worker's memory at the end within 10 % of its value after warm-up."""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor

from reliability import stack
from reliability.deployment import HIGH_LIMITS, Deployment
from reliability.load import MIX, SecretState, Traffic, UserState, summary

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
WARMUP_SECONDS = float(os.environ.get("SOAK_WARMUP_SECONDS", "30"))
CAPACITY_SECONDS = 20
CAPACITY_CLIENTS = 16
WORKERS = 2 * (os.cpu_count() or 1)  # as `make bench` serves it
USERS = 20


def _rss(pids: list[int]) -> dict[int, int]:
    return {pid: stack.rss_kib(pid) for pid in pids}


def test_soak(deployment: Deployment, report) -> None:  # noqa: ANN001
    deploy = deployment
    deploy.configure(**HIGH_LIMITS)  # all traffic comes from one address
    api = deploy.start_api(workers=WORKERS)
    deploy.start_worker()
    deploy.start_beat()
    deploy.allow_reset_host()
    users = []
    for n in range(USERS):
        email = deploy.create_user(f"soak{n}")
        tokens = deploy.sign_in(email).json()
        users.append(UserState(f"soak{n}", email, tokens["access_token"], tokens["refresh_token"]))
    traffic = Traffic(deploy, users)
    mix = ", ".join(f"{kind} {weight}%" for kind, weight in MIX.items())
    report(f"mix: {mix}; {USERS} users; {stack.SERVER} {WORKERS} workers, Celery worker and beat")

    traffic.closed_loop(CAPACITY_CLIENTS, 10)  # caches and pools warm, workers busy
    capacity = traffic.closed_loop(CAPACITY_CLIENTS, CAPACITY_SECONDS)
    rate = 0.8 * capacity
    report(
        f"capacity of this mix: {capacity:.0f} req/s ({CAPACITY_CLIENTS} clients flat out for "
        f"{CAPACITY_SECONDS} s); soak rate {rate:.0f} req/s (80 %)"
    )
    traffic.open_loop(rate, WARMUP_SECONDS)
    workers = api.children()
    rss_start = _rss(workers)
    mark = len(traffic.outcomes)
    achieved, dropped = traffic.open_loop(rate, SOAK_SECONDS)
    rss_end = _rss(workers)
    soak = summary(traffic.outcomes[mark:])
    everything = summary(traffic.outcomes)
    report(
        f"soak {SOAK_SECONDS:.0f} s after {WARMUP_SECONDS:.0f} s warm-up: {soak['requests']} "
        f"requests ({achieved:.0f} req/s; {dropped} dropped from the schedule while the shared "
        f"machine was busier), p50 {soak['p50_ms']:.1f} ms, p99 {soak['p99_ms']:.1f} ms, "
        f"5xx {soak['server_errors']}, no answer {soak['no_answer']}"
    )
    by_kind = collections.Counter(o.kind for o in traffic.outcomes[mark:])
    report("requests by kind: " + ", ".join(f"{k} {n}" for k, n in by_kind.most_common()))
    growth = {pid: (rss_end[pid] - rss_start[pid]) / rss_start[pid] for pid in workers}
    report(
        "RSS per API worker, after warm-up → end: "
        + ", ".join(
            f"{rss_start[p] / 1024:.1f} → {rss_end[p] / 1024:.1f} MiB ({growth[p]:+.1%})"
            for p in workers
        )
    )
    unexpected = collections.Counter((kind, a.status) for kind, a in traffic.unexpected)
    report(
        f"whole run ({everything['requests']} requests with capacity and warm-up): 5xx "
        f"{everything['server_errors']}, unexpected answers {dict(unexpected)}"
    )
    assert everything["server_errors"] == 0 and everything["no_answer"] == 0, traffic.unexpected[:5]
    assert not traffic.unexpected, traffic.unexpected[:5]
    assert traffic.mismatched_reads == 0

    # Nothing lost: every acknowledged secret reads back with its last acknowledged value.
    by_uid = {u.uid: u for u in users}

    def read_back(secret: SecretState) -> bool:
        answer = deploy.http(
            "GET",
            f"/user/{secret.uid}/secrets/{secret.secret_id}/value",
            headers=deploy.key_headers,
        )
        return answer.status == 200 and answer.text == secret.value

    with ThreadPoolExecutor(8) as pool:
        matches = list(pool.map(read_back, traffic.secrets))
    updates = sum(1 for o in traffic.outcomes if o.kind == "secret_update" and o.status == 200)
    report(
        f"secrets: {len(traffic.secrets)} created and {updates} updates acknowledged; "
        f"{sum(matches)} read back with the last acknowledged value, {matches.count(False)} lost"
    )
    assert all(matches)
    counts = dict(deploy.query("SELECT id, logins_count FROM user_account"))
    lost_logins = {uid: counts[uid] - 1 - traffic.logins[uid] for uid in by_uid}
    report(
        f"sign-ins: {sum(traffic.logins.values())} acknowledged, logins_count agrees for "
        f"{sum(1 for v in lost_logins.values() if v == 0)} of {USERS} users"
    )
    assert all(v == 0 for v in lost_logins.values()), lost_logins

    # Every acknowledged reset request's mail is delivered, once.
    expected = sum(traffic.resets.values())

    def delivered() -> bool:
        return len(deploy.postmark.mails()) >= expected

    deploy.wait_for(delivered, 120, f"{expected} reset mails to be delivered")
    per_address = collections.Counter(m.body["To"] for m in deploy.postmark.mails())
    report(
        f"reset mails: {expected} requests acknowledged, {sum(per_address.values())} delivered, "
        f"rows {deploy.deliveries()}"
    )
    assert per_address == traffic.resets
    assert deploy.deliveries() == {"sent": expected}

    worst = max(growth.values())
    report(f"largest RSS growth of an API worker: {worst:+.1%} (limit +10 %)")
    assert worst <= 0.10, growth
