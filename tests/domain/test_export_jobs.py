"""Auth0-compatible export jobs (issue 24): the worker writes gzip'd NDJSON or CSV under
Auth0's field names (`fields` with `export_as`, `limit`; never a password hash), and the
signed download link works without credentials, expires, and names one job of one
tenant."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from app.core import security, sweeps
from app.core.db import db
from app.core.tenancy import tenant_scope
from app.periodic import run_job
from app.portability import exports, jobs
from app.portability import tasks as portability_tasks
from app.portability.models import TransferJob
from app.users import service as user_service
from tests import factories
from tests.factories import PASSWORD, assert_surface_error, wait_until


def make_people(app, tenant_id: str, count: int = 3) -> None:
    for number in range(count):
        factories.make_user(
            app,
            tenant_id,
            user_id=f"p{number}",
            username=f"person{number}",
            email=f"p{number}@example.com",
            password=PASSWORD,
            display_name=f'Person "{number}"',
            user_metadata={"country": "NL", "n": number},
            app_metadata={"plan": "free"},
        )


def start(app, tenant_id: str, **options: Any) -> str:
    options.setdefault("connection_id", None)
    options.setdefault("fields", None)
    options.setdefault("limit", None)
    with app.app_context(), tenant_scope(tenant_id):
        job = exports.start_export(**options)
        db.session.commit()
        return job.id


def finished(app, tenant_id: str, job_id: str) -> tuple[TransferJob, str | None]:
    def done() -> tuple[TransferJob, str | None] | None:
        with app.app_context(), tenant_scope(tenant_id):
            job = jobs.get_job(job_id)
            if job.status in ("completed", "failed"):
                return job, exports.download_url(job)
            return None

    return wait_until(done)


def download(client, url: str):
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "http://gatehouse.test"  # the ISSUER
    return client.get(f"{parts.path}?{parts.query}")


@pytest.fixture(scope="module")
def base_url(app):
    with factories.serve(app) as url:
        yield url


def test_sdk_creates_an_export_and_its_location_downloads_without_auth(
    app, base_url, celery_worker, tenant
):
    """The issue's contract: `jobs.users_exports.create` through auth0-python, then
    `jobs.get` gives a `location` that a plain HTTP client downloads."""
    make_people(app, tenant.id, count=2)
    sdk = factories.auth0_client(base_url, tenant.key, tenant.id)
    [connection] = list(sdk.connections.list())  # the tenant's one connection
    created = sdk.jobs.users_exports.create(
        connection_id=connection.id,
        format="json",
        fields=[{"name": "email"}, {"name": "user_id", "export_as": "id"}],
    )
    assert created.status == "pending" and created.type == "users_export"
    job = wait_until(lambda: (got := sdk.jobs.get(created.id)).status == "completed" and got)
    assert job.location.startswith("http://gatehouse.test/api/v2/jobs/")
    parts = urlsplit(job.location)
    response = requests.get(f"{base_url}{parts.path}?{parts.query}", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/gzip"
    rows = [json.loads(line) for line in gzip.decompress(response.content).splitlines()]
    assert rows == [{"email": f"p{n}@example.com", "id": f"p{n}"} for n in range(2)]


def test_json_export_has_auth0_fields_and_no_hash(app, client, celery_worker, tenant):
    make_people(app, tenant.id)
    job_id = start(app, tenant.id, format="json")
    job, url = finished(app, tenant.id, job_id)
    assert job.status == "completed" and job.total == 3 and job.finished_at is not None
    response = download(client, url)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/gzip"
    assert response.headers["Content-Disposition"] == 'attachment; filename="acme.json.gz"'
    raw = gzip.decompress(response.data)
    assert b"argon2" not in raw and b"password" not in raw
    rows = [json.loads(line) for line in raw.splitlines()]
    assert [row["user_id"] for row in rows] == ["p0", "p1", "p2"]
    first = rows[0]
    assert first["email"] == "p0@example.com" and first["username"] == "person0"
    assert first["name"] == 'Person "0"' and first["email_verified"] is False
    assert first["user_metadata"] == {"country": "NL", "n": 0}
    assert first["identities"][0]["connection"] == "Username-Password-Authentication"
    assert first["created_at"].endswith("Z") and first["logins_count"] == 0


def test_fields_export_as_and_limit(app, client, celery_worker, tenant):
    make_people(app, tenant.id)
    fields = [
        {"name": "user_id"},
        {"name": "email", "export_as": "mail"},
        {"name": "user_metadata.country", "export_as": "country"},
        {"name": "identities[0].connection", "export_as": "provider"},
        {"name": "user_metadata.absent"},
    ]
    job_id = start(app, tenant.id, format="json", fields=fields, limit=2)
    job, url = finished(app, tenant.id, job_id)
    rows = [json.loads(line) for line in gzip.decompress(download(client, url).data).splitlines()]
    assert job.total == 2
    assert rows == [
        {"user_id": f"p{n}", "mail": f"p{n}@example.com", "country": "NL",
         "provider": "Username-Password-Authentication"}
        for n in range(2)
    ]  # fmt: skip


def test_csv_export_escapes_like_auth0(app, client, celery_worker, tenant):
    make_people(app, tenant.id, count=2)
    fields = [
        {"name": "user_id", "export_as": "id"},
        {"name": "name"},
        {"name": "blocked"},
        {"name": "user_metadata.n", "export_as": "n"},
        {"name": "app_metadata"},
    ]
    job_id = start(app, tenant.id, format="csv", fields=fields)
    _job, url = finished(app, tenant.id, job_id)
    response = download(client, url)
    assert response.headers["Content-Disposition"] == 'attachment; filename="acme.csv.gz"'
    text = gzip.decompress(response.data).decode()
    assert text.splitlines()[1] == '"\'p0","\'Person ""0""",false,0,"\'{""plan"":""free""}"'
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["id"] for row in rows] == ["'p0", "'p1"]
    assert rows[1]["name"] == '\'Person "1"' and rows[1]["n"] == "1"

    default = start(app, tenant.id, format="csv")
    _job, url = finished(app, tenant.id, default)
    header = gzip.decompress(download(client, url).data).decode().splitlines()[0]
    assert header.startswith("user_id,email,email_verified,username,name")
    assert "password" not in header and "app_metadata" not in header


def test_bad_requests_are_refused(app, tenant):
    with app.app_context(), tenant_scope(tenant.id):
        for options, code in (
            ({"format": "xml"}, "invalid_format"),
            ({"format": "json", "limit": 0}, "invalid_limit"),
            ({"format": "json", "fields": []}, "invalid_fields"),
            ({"format": "json", "fields": [{"name": ""}]}, "invalid_fields"),
            ({"format": "json", "fields": [{"name": "x"}] * 31}, "invalid_fields"),
            ({"format": "json", "connection_id": "con_0000000000000000"}, "connection_not_found"),
        ):
            with pytest.raises(Exception) as caught:
                exports.start_export(
                    **{"connection_id": None, "fields": None, "limit": None, **options}
                )
            assert getattr(caught.value, "code", None) == code, options


def test_link_is_refused_when_forged_for_another_job_or_tenant(
    app, client, celery_worker, tenant, other_tenant
):
    make_people(app, tenant.id, count=1)
    factories.make_user(app, other_tenant.id, user_id="o1", email="o1@example.com")
    mine = start(app, tenant.id, format="json")
    theirs = start(app, other_tenant.id, format="json")
    _job, url = finished(app, tenant.id, mine)
    _other, other_url = finished(app, other_tenant.id, theirs)
    token = urlsplit(url).query.removeprefix("sig=")

    # Another job's path with my link: not found (the link names one job only).
    response = client.get(f"/api/v2/jobs/{theirs}/download?sig={token}")
    assert_surface_error(response, 404, "management", "inexistent_job")
    # A link signed with another key, or altered: refused.
    forged = security.signed_dumps(
        "not our key", exports.DOWNLOAD_PURPOSE, {"tid": tenant.id, "job": mine}
    )
    response = client.get(f"/api/v2/jobs/{mine}/download?sig={forged}")
    assert_surface_error(response, 403, "management", "download_link_invalid")
    response = client.get(f"/api/v2/jobs/{mine}/download?sig={token[:-2]}xx")
    assert_surface_error(response, 403, "management", "download_link_invalid")
    # A link signed for my tenant that names their job: not found in my tenant.
    with app.app_context():
        crossed = security.signed_dumps(
            app.config["SECRET_KEY"], exports.DOWNLOAD_PURPOSE, {"tid": tenant.id, "job": theirs}
        )
    response = client.get(f"/api/v2/jobs/{theirs}/download?sig={crossed}")
    assert_surface_error(response, 404, "management", "inexistent_job")
    # Without a link at all: a 400 naming the parameter.
    assert client.get(f"/api/v2/jobs/{mine}/download").status_code == 400
    assert download(client, other_url).status_code == 200


def test_link_expires_and_old_exports_are_deleted(deployment):
    app = deployment(
        EXPORT_URL_TTL="1", CELERY_TASK_ALWAYS_EAGER="false", EXPORT_RETENTION_SECONDS="0"
    )
    client = app.test_client()
    handle = factories.make_tenant(app, "acme")
    make_people(app, handle.id, count=1)
    job_id = start(app, handle.id, format="json")
    with app.app_context(), tenant_scope(handle.id):
        exports.run_export(job_id)  # this deployment's worker is this process
        db.session.commit()
        url = exports.download_url(jobs.get_job(job_id))
    assert download(client, url).status_code == 200
    time.sleep(2.1)  # itsdangerous counts whole seconds: past a 1 s lifetime
    assert_surface_error(download(client, url), 403, "management", "download_link_expired")

    with app.app_context():
        assert sweeps.clean(exports.EXPIRED) == 1
        with tenant_scope(handle.id):
            assert db.session.get(TransferJob, job_id) is None
            assert user_service.get_user("p0").email == "p0@example.com"


def test_a_lost_export_is_requeued_by_the_periodic_job(app, celery_worker, tenant):
    make_people(app, tenant.id, count=1)
    with app.app_context(), tenant_scope(tenant.id):
        # As if its message never reached the broker: a job row and nothing queued.
        job = jobs.new_job(type="users_export", format="json", connection_id=None)
        job.created_at = job.created_at - exports.STALE_AFTER * 2
        job_id = job.id
        db.session.commit()
    fresh = start(app, tenant.id, format="json")
    with app.app_context():
        assert sweeps.due(portability_tasks.STALE_EXPORTS) == [(tenant.id, job_id)]
        results = run_job("requeue-stuck")
    assert results["portability.requeue_stale_exports"] == 1
    job, url = finished(app, tenant.id, job_id)
    assert job.status == "completed" and job.total == 1 and url is not None
    assert finished(app, tenant.id, fresh)[0].status == "completed"
    with app.app_context():
        assert sweeps.due(portability_tasks.STALE_EXPORTS) == []
