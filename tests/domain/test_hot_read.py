"""The hot read path (issue 16): a read opens no transaction while a write still commits or
rolls back as one; the bearer check's one select answers the profile exactly as the ORM
row would; compiled dumps equal marshmallow's own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg.pq import TransactionStatus
from sqlalchemy import select

from app.api.dump import CompiledOutputSchema, compile_dump
from app.api.user.schemas import BaseUserSchema, ProfileSchema
from app.core.db import db
from app.core.lazy_begin import is_plain_read
from app.core.tenancy import tenant_scope
from app.users import policies as policy_service
from app.users import service as user_service
from app.users.models import Identity, User
from tests import factories
from tests.factories import PASSWORD, TenantHandle


def _status() -> TransactionStatus:
    dbapi = db.session.connection().connection.dbapi_connection
    assert dbapi is not None
    return dbapi.info.transaction_status


def test_a_read_opens_no_transaction_and_writes_still_roll_back_as_one(
    app: Flask, tenant: TenantHandle
) -> None:
    user_id = factories.make_user(app, tenant.id, user_id="reader", email="r@example.com")
    with app.app_context(), tenant_scope(tenant.id):
        assert user_service.find_user(user_id) is not None
        assert _status() == TransactionStatus.IDLE  # the SELECT ran without BEGIN
        user_service.create_user(user_id="first", email="first@example.com")
        assert _status() == TransactionStatus.INTRANS  # the INSERT opened the transaction
        user_service.create_user(user_id="second", email="second@example.com")
        db.session.rollback()
    with app.app_context(), tenant_scope(tenant.id):
        assert user_service.find_user("first") is None
        assert user_service.find_user("second") is None
        assert factories.count_users(app, tenant.id) == 1


def test_a_locking_read_runs_inside_the_transaction(app: Flask, tenant: TenantHandle) -> None:
    user_id = factories.make_user(app, tenant.id, user_id="locked", email="l@example.com")
    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user(user_id)
        assert _status() == TransactionStatus.IDLE
        user_service.lock_user(user)  # SELECT … FOR UPDATE: its lock must last until COMMIT
        assert _status() == TransactionStatus.INTRANS
        db.session.rollback()


@pytest.mark.parametrize(
    ("statement", "plain"),
    [
        ("SELECT 1", True),
        ("  select id from user_account", True),
        ("SELECT id FROM user_account FOR UPDATE", False),
        ("SELECT id FROM user_account FOR NO KEY UPDATE", False),
        ("SELECT id FROM user_account FOR KEY SHARE", False),
        ("SELECT pg_advisory_xact_lock(1)", False),
        ("SELECT set_config('a.b', 'c', true)", False),
        ("WITH x AS (DELETE FROM policy RETURNING id) SELECT * FROM x", False),
        ("INSERT INTO policy DEFAULT VALUES", False),
        ("SAVEPOINT sa_savepoint_1", False),
    ],
)
def test_only_plain_selects_run_before_begin(statement: str, plain: bool) -> None:
    assert is_plain_read(statement) is plain


def _rich_user(app: Flask, tenant: TenantHandle) -> str:
    """A user with a password, policies, a linked identity, settings and metadata."""
    user_id = factories.make_user(
        app,
        tenant.id,
        user_id="rich",
        username="rich",
        email="rich@example.com",
        password=PASSWORD,
        first_name="Rich",
        custom_scopes=["read:things"],
        settings=[{"key": "theme", "value": "dark"}],
        user_metadata={"plan": "gold", "n": 3},
    )
    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user(user_id)
        policy_service.replace_policies(
            user=user,
            policies=[
                {"resource": "b", "resource_type": "doc", "type": "write"},
                {"resource": "a", "resource_type": "doc", "type": "read"},
            ],
        )
        db.session.add(
            Identity(
                tenant_id=tenant.id,
                user_id=user_id,
                provider="github",
                provider_user_id="gh-42",
                connection="github",
                is_social=True,
                profile_data={"login": "rich"},
                created_at=datetime.now(UTC),
            )
        )
        db.session.commit()
    return user_id


def _orm_dump(app: Flask, tenant_id: str, user_id: str, schema: ma.Schema) -> dict[str, Any]:
    """What marshmallow's own dump prints for the ORM row (the answer before issue 16)."""
    with app.app_context(), tenant_scope(tenant_id):
        user = db.session.scalar(select(User).where(User.id == user_id))
        return ma.Schema.dump(schema, user)


def test_the_bearer_checks_select_answers_the_profile_as_the_orm_row_would(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    user_id = _rich_user(app, tenant)
    tokens = factories.sign_in(client, tenant.id, "rich", PASSWORD)
    own = client.get("/user/profile", headers=factories.bearer(tokens["access_token"]))
    by_key = client.get(f"/user/{user_id}/profile", headers=tenant.headers)
    base = client.get(f"/user/{user_id}", headers=tenant.headers)
    assert own.status_code == by_key.status_code == base.status_code == 200

    expected = _orm_dump(app, tenant.id, user_id, ProfileSchema())
    assert own.get_json() == by_key.get_json() == expected
    assert list(own.get_json()) == list(expected)  # same field order as the schema
    assert [p["resource"] for p in expected["permissions"]] == ["b", "a"]  # id order
    assert [i["provider"] for i in expected["identities"]] == ["gatehouse", "github"]
    assert expected["identities"][0]["connection"] == "Username-Password-Authentication"
    assert base.get_json() == _orm_dump(app, tenant.id, user_id, BaseUserSchema())
    assert own.headers["ETag"] == by_key.headers["ETag"] == base.headers["ETag"]


def test_an_unknown_or_foreign_user_is_not_found_on_the_view_path(
    client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle, app: Flask
) -> None:
    foreign = factories.make_user(app, other_tenant.id, user_id="foreign", email="f@example.com")
    for path in ("/user/nobody", f"/user/{foreign}/profile"):
        body = factories.assert_error(
            client.get(path, headers=tenant.headers), 404, "user_not_found"
        )
        assert body["error"] == "user_not_found"


def test_the_hot_path_filters_by_tenant_by_hand_and_never_crosses_one(
    client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle, app: Flask
) -> None:
    """The bearer select and the read model filter on the tenant themselves (no ORM guard on
    that path): one user id in two tenants must always read its own tenant's row."""
    for handle, email in ((tenant, "a@acme.example"), (other_tenant, "a@globex.example")):
        factories.make_user(
            app, handle.id, user_id="alice", username="alice", email=email, password=PASSWORD
        )
    acme = factories.bearer(factories.sign_in(client, tenant.id, "alice")["access_token"])
    globex = factories.bearer(factories.sign_in(client, other_tenant.id, "alice")["access_token"])
    for headers, email in ((acme, "a@acme.example"), (globex, "a@globex.example")):
        for path in ("/user/profile", "/user/alice/profile", "/user/alice"):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 200 and answer.get_json()["email"] == email, path
    crossed = client.get("/user/profile", headers={**acme, "X-Tenant-ID": other_tenant.id})
    factories.assert_error(crossed, 403, "tenant_mismatch")
    by_key = client.get("/user/alice/profile", headers=other_tenant.headers)
    assert by_key.get_json()["email"] == "a@globex.example"


class _Thing:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


class _Inner(ma.Schema):
    label = ma.fields.String(data_key="Label")
    n = ma.fields.Integer()


class _Hooked(ma.Schema):
    x = ma.fields.Integer()

    @ma.post_dump
    def twice(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {"x": data["x"] * 2}


class _Everything(CompiledOutputSchema):
    name = ma.fields.String()
    renamed = ma.fields.String(attribute="source", data_key="Renamed")
    flag = ma.fields.Boolean()
    count = ma.fields.Integer()
    text_count = ma.fields.Integer(as_string=True)
    absent = ma.fields.String()
    defaulted = ma.fields.String(dump_default=lambda: "fallback")
    raw = ma.fields.Raw(allow_none=True)
    mapping = ma.fields.Dict()
    tags = ma.fields.List(ma.fields.String())
    numbers = ma.fields.List(ma.fields.Integer())
    inner = ma.fields.Nested(_Inner)
    inners = ma.fields.List(ma.fields.Nested(_Inner))
    hooked = ma.fields.Nested(_Hooked)
    method = ma.fields.Method("_shout")
    dotted = ma.fields.String(attribute="inner.label")

    def _shout(self, obj: Any) -> str:
        return str(ma.utils.get_value(obj, "name")).upper()


@pytest.mark.parametrize(
    "obj",
    [
        _Thing(
            name="ada",
            source="src",
            flag=1,
            count="7",
            text_count=8,
            raw=None,
            mapping={"a": [1]},
            tags=["x", 3],
            numbers=[1, True],
            inner={"label": "in", "n": 2.0},
            inners=[_Thing(label="one", n=1), None],
            hooked=_Thing(x=4),
        ),
        {"name": "dict", "flag": False, "inner": None, "tags": None, "mapping": None},
    ],
)
def test_a_compiled_dump_equals_marshmallows(obj: Any) -> None:
    schema = _Everything()
    expected = ma.Schema.dump(schema, obj)
    assert schema.dump(obj) == expected
    assert list(schema.dump(obj)) == list(expected)
    assert schema.dump([obj, obj], many=True) == [expected, expected]


def test_a_schema_with_dump_hooks_keeps_marshmallows_path() -> None:
    assert compile_dump(_Hooked()) is None
    assert compile_dump(_Inner()) is not None


def test_a_view_read_inside_a_unit_of_work_sees_its_writes(
    app: Flask, tenant: TenantHandle
) -> None:
    user_id = factories.make_user(app, tenant.id, user_id="writer", email="w@example.com")
    with app.app_context(), tenant_scope(tenant.id):
        user_service.update_user(
            user=user_service.get_user(user_id), changes={"first_name": "New"}, actor="test"
        )
        assert user_service.get_user_view(user_id).first_name == "New"  # not yet committed
        db.session.rollback()
    with app.app_context(), tenant_scope(tenant.id):
        assert user_service.get_user_view(user_id).first_name is None


def test_a_token_naming_another_users_session_is_refused(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    from app.tokens import signing
    from tests.oauth_support import claims

    for name in ("amy", "bob"):
        factories.make_user(app, tenant.id, user_id=name, username=name, password=PASSWORD)
    amy = factories.sign_in(client, tenant.id, "amy", PASSWORD)["access_token"]
    bob = factories.sign_in(client, tenant.id, "bob", PASSWORD)["access_token"]
    with app.app_context():
        forged = signing.sign({**claims(amy), "sid": claims(bob)["sid"]})
    assert client.get("/user/profile", headers=factories.bearer(amy)).status_code == 200
    body = factories.assert_error(
        client.get("/user/profile", headers=factories.bearer(forged)),
        401,
        "invalid_token",
    )
    assert body["error"] == "invalid_token"
