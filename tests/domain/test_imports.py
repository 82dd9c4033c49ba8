"""The import engine (issue 24): per-user errors and what is still imported around them,
duplicates inside a file (in one batch and across batches), upsert rules, hostile strings,
a truncated file's byte offset, TOTP secrets, the weak-hash reset setting, and an import
job resumed after its worker was killed (and found again by the periodic re-queue)."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta
from typing import Any

import bcrypt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.core import sweeps
from app.core.db import db, utcnow
from app.core.tenancy import tenant_scope
from app.credentials.models import MfaEnrolment
from app.periodic import run_job
from app.portability import imports, jobs, sources
from app.portability import tasks as portability_tasks
from app.portability.models import TransferJob
from app.portability.records import FileError, Rejected, UserRecord
from app.tenants.models import Tenant
from app.users.models import User
from tests.factories import PASSWORD, TenantHandle, count_users, sign_in, totp_code, wait_until
from tests.oauth_support import assert_oauth_error, token_request

BCRYPT = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def as_file(users: Any) -> io.BytesIO:
    return io.BytesIO(users if isinstance(users, bytes) else json.dumps(users).encode())


def run(
    app: Flask, tenant_id: str, users: Any, **options: Any
) -> tuple[imports.Summary, list[Rejected]]:
    """Import `users` (auth0 format unless told) as the CLI does; the summary and the
    rejected users."""
    rejected: list[Rejected] = []
    options.setdefault("format", "auth0")
    with app.app_context(), tenant_scope(tenant_id):
        summary = imports.import_stream(as_file(users), on_rejected=rejected.append, **options)
    return summary, rejected


def codes(rejected: list[Rejected]) -> dict[int, list[tuple[str, str]]]:
    return {item.index: [(e["code"], e["path"]) for e in item.errors] for item in rejected}


def users_of(app: Flask, tenant_id: str) -> dict[str, User]:
    with app.app_context(), tenant_scope(tenant_id):
        users = list(db.session.scalars(select(User)))
        for user in users:
            db.session.expunge(user)
    return {user.id: user for user in users}


def test_a_user_missing_email_and_username_is_rejected_and_the_rest_imported(
    app: Flask, tenant: TenantHandle
) -> None:
    summary, rejected = run(
        app,
        tenant.id,
        [
            {"email": "a@example.com", "password_hash": BCRYPT},
            {"name": "nobody", "user_id": "nobody"},
            {"username": "bee", "password_hash": BCRYPT},
        ],
    )
    assert (summary.inserted, summary.failed, summary.total) == (2, 1, 3)
    assert codes(rejected) == {1: [("ANY_OF_MISSING", "")]}
    assert rejected[0].shown == {"name": "nobody", "user_id": "nobody"}
    assert set(users_of(app, tenant.id)) != {"nobody"} and count_users(app, tenant.id) == 2


def test_unknown_algorithms_and_malformed_hashes_are_per_user_errors(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    md5 = hashlib.md5(PASSWORD.encode()).hexdigest()
    summary, rejected = run(
        app,
        tenant.id,
        [
            {
                "email": "rot@example.com",
                "custom_password_hash": {"algorithm": "rot13", "hash": {"value": "x"}},
            },
            {"email": "short@example.com", "password_hash": "$2b$10$tooshort"},
            {"email": "sha@example.com", "password_hash": "$5$rounds=1000$salt$hash"},
            {
                "email": "md5@example.com",
                "custom_password_hash": {
                    "algorithm": "md5",
                    "hash": {"value": md5, "encoding": "hex"},
                },
            },
        ],
    )
    assert codes(rejected) == {
        0: [("UNSUPPORTED_HASH", "custom_password_hash.algorithm")],
        1: [("INVALID_HASH", "password_hash")],
        2: [("UNSUPPORTED_HASH", "password_hash")],
    }
    for item in rejected:  # the hash is never echoed back
        assert "password_hash" not in item.shown and "custom_password_hash" not in item.shown
        assert "tooshort" not in json.dumps(item.errors)
    assert (summary.inserted, summary.weak_hashes) == (1, 1)
    sign_in(client, tenant.id, "md5@example.com")


def test_a_duplicate_inside_the_file_is_rejected_in_one_batch_and_across_batches(
    app: Flask, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    users = [
        {"email": "Dup@Example.com", "user_id": "first"},
        {"email": "dup@example.COM", "user_id": "second"},  # same email, casefolded
        {"username": "Twin", "user_id": "third"},
        {"username": "twin", "user_id": "fourth"},
        {"email": "other@example.com", "user_id": "first"},  # same id
    ]
    for batch_size in (100, 1):  # one batch; then every user its own batch
        for upsert in (False, True):
            with app.app_context():
                db.session.execute(User.__table__.delete())
                db.session.commit()
            summary, rejected = run(app, tenant.id, users, batch_size=batch_size, upsert=upsert)
            assert codes(rejected) == {
                1: [("DUPLICATED_USER", "email")],
                3: [("DUPLICATED_USER", "username")],
                4: [("DUPLICATED_USER", "user_id")],
            }, (batch_size, upsert)
            assert all("more than once" in item.errors[0]["message"] for item in rejected)
            assert sorted(users_of(app, tenant.id)) == ["first", "third"]
            assert (summary.inserted, summary.updated, summary.failed) == (2, 0, 3)
    # A tenant that already has users takes the look-up path for every key.
    run(app, other_tenant.id, [{"email": "someone@example.com"}])
    summary, rejected = run(app, other_tenant.id, users, batch_size=1)
    assert sorted(codes(rejected)) == [1, 3, 4] and summary.inserted == 2


def test_upsert_updates_given_fields_and_never_ids_or_emails(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    run(
        app,
        tenant.id,
        [
            {
                "email": "up@example.com",
                "user_id": "up",
                "name": "Before",
                "nickname": "kept",
                "user_metadata": {"a": 1, "b": 2},
            },
            {"email": "other@example.com", "user_id": "other"},
        ],
    )
    new_hash = bcrypt.hashpw(b"a new password 123", bcrypt.gensalt(rounds=4)).decode()
    summary, rejected = run(
        app,
        tenant.id,
        [
            {
                "email": "UP@example.com",
                "name": "After",
                "user_metadata": {"c": 3},
                "password_hash": new_hash,
            },
            # Its email is one user's and its id another's: refused, nothing changes.
            {"email": "other@example.com", "user_id": "up", "name": "Hijack"},
            {"email": "new@example.com", "user_id": "new"},
        ],
        upsert=True,
    )
    assert (summary.inserted, summary.updated, summary.failed) == (1, 1, 1)
    assert codes(rejected) == {1: [("DUPLICATED_USER", "email")]}
    users = users_of(app, tenant.id)
    up = users["up"]
    assert (up.display_name, up.nickname, up.user_metadata) == ("After", "kept", {"c": 3})
    assert up.email == "up@example.com"  # the email is not upsertable
    assert users["other"].display_name is None
    sign_in(client, tenant.id, "up@example.com", "a new password 123")


def test_hostile_strings_are_per_user_errors_not_crashes(app: Flask, tenant: TenantHandle) -> None:
    raw = (
        b'[{"email": "nul@example.com", "name": "a\\u0000b"},'
        b'{"email": "surrogate@example.com", "name": "x\\ud800y"},'
        b'{"email": "huge@example.com", "name": "' + b"A" * 100_000 + b'"},'
        b'{"email": "meta@example.com", "user_metadata": {"k": "' + b"B" * 70_000 + b'"}},'
        b'{"email": "nulmeta@example.com", "app_metadata": {"k": "\\u0000"}},'
        b'{"email": 5},'
        b'{"email": "not an email"},'
        b'{"email": "ok@example.com", "user_id": "has spaces"},'
        b'{"email": "extra@example.com", "identities": []},'
        b'"just a string",'
        b'{"email": "fine@example.com", "email_verified": "yes"},'
        b'{"email": "good@example.com", "name": "G\xc3\xb6del \xf0\x9f\x98\x80"}]'
    )
    summary, rejected = run(app, tenant.id, raw)
    assert codes(rejected) == {
        0: [("INVALID_FORMAT", "name")],
        2: [("MAX_LENGTH", "name")],
        3: [("INVALID_FORMAT", "user_metadata")],
        4: [("INVALID_FORMAT", "app_metadata")],
        5: [("INVALID_TYPE", "email")],
        6: [("INVALID_FORMAT", "email")],
        7: [("INVALID_FORMAT", "user_id")],
        8: [("OBJECT_ADDITIONAL_PROPERTIES", "identities")],
        9: [("OBJECT_REQUIRED", "")],
        10: [("INVALID_TYPE", "email_verified")],
    }
    # A lone surrogate cannot reach the database: the parser replaces it.
    users = users_of(app, tenant.id)
    assert {user.email for user in users.values()} == {
        "surrogate@example.com",
        "good@example.com",
    }
    assert "\ud800" not in next(u for u in users.values() if u.email.startswith("s")).display_name
    assert summary.total == 12


def test_a_truncated_file_fails_at_its_offset_and_keeps_the_users_before(
    app: Flask, tenant: TenantHandle
) -> None:
    whole = json.dumps(
        [{"email": f"u{n}@example.com", "password_hash": BCRYPT} for n in range(40)]
    ).encode()
    cut = len(whole) // 2
    with pytest.raises(FileError) as raised:
        run(app, tenant.id, whole[:cut], batch_size=5)
    assert raised.value.offset == cut
    assert f"at byte {cut}" in raised.value.message
    assert BCRYPT not in raised.value.message
    assert 15 <= count_users(app, tenant.id) < 40  # the whole users before the cut

    with pytest.raises(FileError) as raised:
        run(app, tenant.id, b"this is not json")
    assert raised.value.offset == 0 and "JSON array" in raised.value.message
    with pytest.raises(FileError) as raised:
        run(app, tenant.id, b"")
    assert raised.value.offset == 0 and "empty" in raised.value.message


def test_a_byte_order_mark_is_skipped(app: Flask, tenant: TenantHandle) -> None:
    summary, _ = run(
        app, tenant.id, b"\xef\xbb\xbf" + json.dumps([{"email": "b@example.com"}]).encode()
    )
    assert summary.inserted == 1


def test_a_totp_secret_is_imported_encrypted_and_asked_for_at_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    summary, rejected = run(
        app,
        tenant.id,
        [
            {
                "email": "totp@example.com",
                "username": "totp",
                "password_hash": BCRYPT,
                "mfa_factors": [{"totp": {"secret": TOTP_SECRET}}],
            },
            {"email": "sms@example.com", "mfa_factors": [{"phone": {"value": "+15551234"}}]},
            {"email": "bad@example.com", "mfa_factors": [{"totp": {"secret": "not base32!"}}]},
        ],
    )
    assert codes(rejected) == {
        1: [("UNSUPPORTED_FACTOR", "mfa_factors.0")],
        2: [("INVALID_FORMAT", "mfa_factors.0.totp.secret")],
    }
    assert all("mfa_factors" not in item.shown for item in rejected)
    with app.app_context(), tenant_scope(tenant.id):
        enrolment = db.session.scalars(select(MfaEnrolment)).one()
        assert enrolment.status == "confirmed" and enrolment.type == "totp"
        assert TOTP_SECRET not in enrolment.secret_encrypted
    grant = {"grant_type": "password", "username": "totp", "password": PASSWORD}
    assert_oauth_error(token_request(client, tenant.id, **grant), 403, "mfa_required")
    answer = token_request(client, tenant.id, otp=totp_code(TOTP_SECRET), **grant)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def test_weak_hashes_are_counted_and_dropped_when_the_tenant_requires_a_reset(
    app: Flask, tenant: TenantHandle
) -> None:
    md5 = {
        "algorithm": "md5",
        "hash": {"value": hashlib.md5(PASSWORD.encode()).hexdigest(), "encoding": "hex"},
    }
    with app.app_context():
        db.session.get(Tenant, tenant.id).weak_password_hashes = "reset"
        db.session.commit()
    summary, _ = run(
        app,
        tenant.id,
        [
            {"email": "weak@example.com", "user_id": "weak", "custom_password_hash": md5},
            {"email": "strong@example.com", "user_id": "strong", "password_hash": BCRYPT},
        ],
    )
    assert (summary.inserted, summary.weak_hashes) == (2, 1)
    users = users_of(app, tenant.id)
    assert users["weak"].password_hash is None
    assert users["strong"].password_hash == BCRYPT


def test_the_firebase_source_maps_fields_and_refuses_a_bad_shape() -> None:
    items = list(
        sources.read(
            as_file(
                {
                    "users": [
                        {
                            "localId": "fb1",
                            "email": "fb@example.com",
                            "phoneNumber": "+15550001",
                            "disabled": True,
                            "customAttributes": "[1, 2]",
                        },
                        {"localId": "fb2", "createdAt": "soon"},
                    ]
                }
            ),
            "firebase",
        )
    )
    assert [type(item) for item in items] == [Rejected, Rejected]
    assert items[0].errors[0]["path"] == "customAttributes"
    assert items[1].errors[0]["path"] == "createdAt"
    good = next(sources.read(as_file({"users": [{"localId": "x", "disabled": True}]}), "firebase"))
    assert isinstance(good, UserRecord) and good.profile == {"blocked": True}
    with pytest.raises(FileError):
        list(sources.read(as_file({"accounts": []}), "firebase"))


def _job_with_file(app: Flask, tenant_id: str, content: bytes) -> str:
    """An import job whose file is stored, not queued (the test plays the worker)."""
    with app.app_context(), tenant_scope(tenant_id):
        job = jobs.new_job(type="users_import", format="auth0", upsert=False)
        job.file_bytes = jobs.write_file(job, "input", [content])
        job_id = job.id
        db.session.commit()
    return job_id


def _job(app: Flask, tenant_id: str, job_id: str) -> TransferJob:
    with app.app_context(), tenant_scope(tenant_id):
        job = jobs.get_job(job_id)
        db.session.expunge(job)
        return job


def test_a_job_killed_mid_way_resumes_without_duplicates(app: Flask, tenant: TenantHandle) -> None:
    users = [{"email": f"r{n}@example.com", "password_hash": BCRYPT} for n in range(7)]
    users.insert(3, {"name": "no identifier"})
    job_id = _job_with_file(app, tenant.id, json.dumps(users).encode())
    # What a worker killed after its first committed batch leaves: the first 4 records
    # written (one rejected), the counters and the resume point moved with them.
    with app.app_context(), tenant_scope(tenant.id):
        job = jobs.lock_job(job_id)
        records = list(sources.read(as_file(users[:4]), "auth0"))
        summary, rejected = imports.apply(
            [r for r in records if isinstance(r, UserRecord)], upsert=False, marker=job.created_at
        )
        for item in [r for r in records if isinstance(r, Rejected)]:
            jobs.add_error(job, item.index, item.shown, item.errors)
        job.status, job.records_done = "processing", 4
        job.inserted, job.failed, job.total = summary.inserted, 1, 4
        db.session.commit()

    with app.app_context(), tenant_scope(tenant.id):
        imports.run_import(job_id)
        db.session.commit()
    job = _job(app, tenant.id, job_id)
    assert (job.status, job.inserted, job.failed, job.total) == ("completed", 7, 1, 8)
    assert job.records_done == 8 and job.finished_at is not None
    assert count_users(app, tenant.id) == 7
    with app.app_context(), tenant_scope(tenant.id):
        assert [e["user"] for e in jobs.errors_of(jobs.get_job(job_id))] == [
            {"name": "no identifier"}
        ]
        assert list(jobs.read_chunks(jobs.get_job(job_id), "input")) == []  # file dropped
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "users.imported")
        ).one()
        assert event.target == job_id and event.data["inserted"] == 7
        # Run again (a duplicate message): a completed job is left alone.
        imports.run_import(job_id)
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(User)) == 7


def test_a_job_whose_file_is_not_json_fails_with_the_offset(
    app: Flask, tenant: TenantHandle
) -> None:
    good = json.dumps({"email": "kept@example.com"}).encode()
    job_id = _job_with_file(app, tenant.id, b"[" + good + b", {oops")
    with app.app_context(), tenant_scope(tenant.id):
        imports.run_import(job_id)
        db.session.commit()
    job = _job(app, tenant.id, job_id)
    assert job.status == "failed"
    assert job.status_details.startswith("The file is not valid JSON at byte ")
    assert job.inserted == 1 and count_users(app, tenant.id) == 1


def test_the_periodic_requeue_runs_a_stale_job_on_the_worker(
    app: Flask, tenant: TenantHandle, celery_worker: Any
) -> None:
    users = [{"email": f"s{n}@example.com"} for n in range(3)]
    stale = _job_with_file(app, tenant.id, json.dumps(users).encode())
    fresh = _job_with_file(app, tenant.id, b"[]")
    with app.app_context(), tenant_scope(tenant.id):
        job = jobs.lock_job(stale)
        job.status, job.heartbeat_at = "processing", utcnow() - timedelta(minutes=10)
        jobs.lock_job(fresh).heartbeat_at = utcnow()
        db.session.commit()
        found = sweeps.due(portability_tasks.STALE_IMPORTS)
    assert (tenant.id, stale) in found and (tenant.id, fresh) not in found
    with app.app_context():
        results = run_job("requeue-stuck")
        db.session.commit()
    assert results["portability.requeue_stale_imports"] >= 1
    wait_until(lambda: _job(app, tenant.id, stale).status == "completed")
    assert count_users(app, tenant.id) == 3


def test_import_stale_seconds_sets_when_a_silent_job_is_queued_again(
    app: Flask, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = _job_with_file(app, tenant.id, b"[]")
    with app.app_context(), tenant_scope(tenant.id):
        job = jobs.lock_job(silent)
        job.status, job.heartbeat_at = "processing", utcnow() - timedelta(seconds=20)
        db.session.commit()
    with app.app_context():
        assert app.config["IMPORT_STALE_SECONDS"] == 300  # the default: 20 s is not stale
        assert (tenant.id, silent) not in sweeps.due(portability_tasks.STALE_IMPORTS)
        monkeypatch.setitem(app.config, "IMPORT_STALE_SECONDS", 10)
        assert (tenant.id, silent) in sweeps.due(portability_tasks.STALE_IMPORTS)
        monkeypatch.setitem(app.config, "IMPORT_STALE_SECONDS", 30)
        assert (tenant.id, silent) not in sweeps.due(portability_tasks.STALE_IMPORTS)


def test_an_api_job_writing_meanwhile_is_seen_by_the_cli_import(
    app: Flask, tenant: TenantHandle
) -> None:
    """The CLI skips look-ups in a tenant that started empty, unless an API import job of
    the tenant is pending or running: then the users that job writes are found."""
    from app.users import service as user_service

    _job_with_file(app, tenant.id, b"[]")  # pending, as an uploaded job waits its turn
    users = [{"email": f"{name}@example.com"} for name in ("a", "b", "c")]

    def job_writes(summary: imports.Summary) -> None:
        if summary.total == 1:  # between the CLI's first and second batches
            user_service.create_user(user_id="by-the-job", email="c@example.com")
            db.session.commit()

    summary, rejected = run(app, tenant.id, users, batch_size=1, on_progress=job_writes)
    assert codes(rejected) == {2: [("DUPLICATED_USER", "email")]}
    assert (summary.inserted, summary.failed) == (2, 1)
    assert count_users(app, tenant.id) == 3


class Trickle(io.BytesIO):
    """A stream handing out a few bytes a read, so strings and escapes straddle chunks."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(3)


def test_nesting_deeper_than_the_limit_stops_the_file_before_the_parser_sees_it() -> None:
    tricky = '[{"a": "]]]}}} [[[{{{ \\" \\\\", "b": "\\\\\\"[[["}, {"c": "\\\\"}]'
    nested = "[" * 60 + "]" * 60
    users = [
        {"email": "a@example.com", "name": tricky, "user_metadata": {"deep": json.loads(nested)}}
    ]
    body = json.dumps(users).encode()
    for stream in (io.BytesIO(body), Trickle(body)):
        items = list(sources.read(stream, "auth0"))
        assert [type(item) for item in items] == [UserRecord]
        assert items[0].profile["display_name"] == tricky
    # 100 000 levels in 200 kB: ijson would need gigabytes to build it.
    deep = b'[{"email": "d@example.com", "user_metadata": {"k": ' + b"[" * 100_000
    for stream in (io.BytesIO(deep + b"]" * 100_000 + b"}}]"), Trickle(deep)):
        with pytest.raises(FileError) as raised:
            list(sources.read(stream, "auth0"))
        assert "nests deeper than 64 levels" in raised.value.message


def test_a_user_created_meanwhile_with_the_same_id_is_refused_not_the_batch(
    app: Flask, tenant: TenantHandle
) -> None:
    """The CLI in a tenant that started empty does not look up keys it never wrote; the
    unique id still refuses a clash with a user created meanwhile by another path, and
    only that user is rejected (the batch is inserted row by row)."""
    from app.users import service as user_service

    users = [{"email": "x1@example.com", "user_id": "x1"}] + [
        {"email": f"y{n}@example.com", "user_id": f"y{n}", "user_metadata": {"n": n}}
        for n in range(3)
    ]

    def someone_else_writes(summary: imports.Summary) -> None:
        if summary.total == 1:
            user_service.create_user(user_id="y1", email="elsewhere@example.com")
            db.session.commit()

    summary, rejected = run(app, tenant.id, users, batch_size=1, on_progress=someone_else_writes)
    assert codes(rejected) == {2: [("DUPLICATED_USER", "user_id")]}
    assert (summary.inserted, summary.failed) == (3, 1)
    stored = users_of(app, tenant.id)
    assert stored["y1"].email == "elsewhere@example.com"
    assert stored["y2"].user_metadata == {"n": 2}


def test_the_fallback_insert_writes_the_same_rows_as_copy(app: Flask, tenant: TenantHandle) -> None:
    """A batch with a clash goes in row by row: every column as COPY would write it."""
    from app.users import service as user_service

    user_service_user = {"user_id": "taken", "email": "taken@example.com"}
    with app.app_context(), tenant_scope(tenant.id):
        user_service.create_user(**user_service_user)
        db.session.commit()
    users = [
        {"email": "t@example.com", "user_id": "taken"},
        {
            "email": "full@example.com",
            "user_id": "full",
            "username": "Full",
            "name": "Full Name",
            "email_verified": True,
            "blocked": True,
            "app_metadata": {"plan": "pro"},
            "user_metadata": {"lang": "fr"},
            "password_hash": BCRYPT,
        },
    ]
    records = [r for r in sources.read(as_file(users), "auth0") if isinstance(r, UserRecord)]
    with app.app_context(), tenant_scope(tenant.id):
        # Look-ups skipped as in an import that started empty: the COPY meets the clash.
        written = imports.Written()
        prepared = imports.prepare(records, tenant_id=tenant.id, marker=utcnow(), reset_weak=False)
        summary, rejected = imports.write(prepared, upsert=False, written=written)
        db.session.commit()
    assert codes(rejected) == {0: [("DUPLICATED_USER", "user_id")]}
    full = users_of(app, tenant.id)["full"]
    assert (full.username, full.username_normalized, full.display_name) == (
        "Full",
        "full",
        "Full Name",
    )
    assert (full.email_verified, full.blocked, full.password_hash) == (True, True, BCRYPT)
    assert (full.app_metadata, full.user_metadata, full.custom_scopes) == (
        {"plan": "pro"},
        {"lang": "fr"},
        [],
    )
    assert full.version == 1 and full.logins_count == 0


def test_a_second_cli_import_of_the_tenant_is_refused_while_one_runs(
    app: Flask, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    """Two CLI imports side by side would each trust their own filter of written keys and
    miss the other's users: the second is refused until the first ends. Another tenant's
    import is not held up."""
    from app.core.errors import Conflict

    seen: list[str] = []

    def second_import(summary: imports.Summary) -> None:
        if seen:
            return
        seen.append("first batch written")
        with pytest.raises(Conflict) as refused:
            run(app, tenant.id, [{"email": "b@example.com"}])  # a real second connection
        assert refused.value.code == "import_running"
        other, _ = run(app, other_tenant.id, [{"email": "b@example.com"}])
        assert other.inserted == 1

    users = [{"email": "a@example.com"}, {"email": "b@example.com"}]
    summary, rejected = run(app, tenant.id, users, batch_size=1, on_progress=second_import)
    assert seen and (summary.inserted, rejected) == (2, [])
    # Once it has ended, the next import runs (and finds the users the first one wrote).
    again, rejected = run(app, tenant.id, users)
    assert (again.inserted, again.failed) == (0, 2)
    assert count_users(app, tenant.id) == 2
