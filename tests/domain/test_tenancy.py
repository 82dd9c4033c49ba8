"""Tenant isolation: another tenant's user is indistinguishable from a missing one, on
every route that takes a user id or a tenant-owned value; and the scope fails closed."""

from __future__ import annotations

import pytest

from app.core.tenancy import TenancyError, all_tenants, tenant_scope
from app.users import service as user_service
from tests import factories
from tests.factories import assert_error

USER_ID = "victim"
EMAIL = "victim@example.com"

# (method, path, json body, expected status, expected body or None for an error body)
ROUTES = [
    ("get", f"/user/{USER_ID}", None, 404, None),
    ("get", f"/user/{USER_ID}/profile", None, 404, None),
    ("get", f"/users/{USER_ID}", None, 404, None),
    ("get", f"/users/{USER_ID}/", None, 404, None),
    ("patch", f"/users/{USER_ID}", {"email": "taken@example.com"}, 404, None),
    ("patch", f"/users/{USER_ID}", {"emailVerified": True}, 404, None),
    ("delete", f"/users/{USER_ID}", None, 404, None),
    ("get", f"/auth/user?userId={USER_ID}", None, 200, []),
    ("get", f"/auth/user?email={EMAIL}", None, 200, []),
    ("get", f"/auth/user?userId={USER_ID}&email={EMAIL}", None, 200, []),
]


def snapshot(client, tenant) -> tuple[dict, dict]:
    """The user as both surfaces show it to its own tenant."""
    account = client.get(f"/users/{USER_ID}", headers=tenant.m2_headers)
    profile = client.get(f"/user/{USER_ID}/profile", headers=tenant.headers)
    assert account.status_code == 200 and profile.status_code == 200
    return account.get_json(), profile.get_json()


@pytest.mark.parametrize("header_style", ["headers", "m2_headers"])
@pytest.mark.parametrize(
    ("method", "path", "body", "status", "expected"),
    ROUTES,
    ids=[f"{r[0].upper()} {r[1]} {r[2] or ''}".strip() for r in ROUTES],
)
def test_other_tenant_cannot_see_or_touch_the_user(
    app, client, tenant, other_tenant, header_style, method, path, body, status, expected
):
    factories.make_user(app, tenant.id, user_id=USER_ID, email=EMAIL, display_name="Victim")
    before = snapshot(client, tenant)

    headers = getattr(other_tenant, header_style)
    response = getattr(client, method)(path, json=body, headers=headers)

    if expected is None:
        error = assert_error(response, status, "user_not_found")
        assert USER_ID not in error["message"] and EMAIL not in error["message"]
    else:
        assert response.status_code == status
        assert response.get_json() == expected
    assert snapshot(client, tenant) == before


ERROR_ROUTES = [(m, p, b) for m, p, b, _, expected in ROUTES if expected is None]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    ERROR_ROUTES,
    ids=[f"{m.upper()} {p} {b or ''}".strip() for m, p, b in ERROR_ROUTES],
)
def test_other_tenant_answer_equals_missing_user_answer(
    app, client, tenant, other_tenant, method, path, body
):
    """Same status, code and message whether the id exists elsewhere or nowhere."""
    factories.make_user(app, tenant.id, user_id=USER_ID, email=EMAIL)
    send = getattr(client, method)
    elsewhere = send(path, json=body, headers=other_tenant.m2_headers)
    nowhere = send(
        path.replace(USER_ID, "nobody-at-all"), json=body, headers=other_tenant.m2_headers
    )
    assert elsewhere.status_code == nowhere.status_code == 404
    assert elsewhere.get_json()["error"] == nowhere.get_json()["error"]
    assert elsewhere.get_json()["message"] == nowhere.get_json()["message"]


def test_same_user_id_lives_independently_in_two_tenants(client, tenant, other_tenant):
    first = client.post(
        "/auth/user", json={"uid": "same-id", "email": "a@example.com"}, headers=tenant.m2_headers
    )
    second = client.post(
        "/auth/user",
        json={"uid": "same-id", "email": "b@example.com"},
        headers=other_tenant.m2_headers,
    )
    assert first.status_code == 200 and second.status_code == 200
    assert client.get("/users/same-id", headers=tenant.m2_headers).get_json()["email"] == (
        "a@example.com"
    )
    assert client.get("/users/same-id", headers=other_tenant.m2_headers).get_json()["email"] == (
        "b@example.com"
    )
    base = client.get("/user/same-id", headers=other_tenant.headers).get_json()
    assert base["tenant_id"] == other_tenant.id

    # Changing or deleting one leaves the other alone.
    patched = client.patch(
        "/users/same-id", json={"email": "c@example.com"}, headers=tenant.m2_headers
    )
    assert patched.status_code == 200
    assert client.delete("/users/same-id", headers=other_tenant.m2_headers).status_code == 204
    assert client.get("/users/same-id", headers=tenant.m2_headers).get_json()["email"] == (
        "c@example.com"
    )
    assert client.get("/users/same-id", headers=other_tenant.m2_headers).status_code == 404
    lookup = client.get("/auth/user?email=b@example.com", headers=tenant.m2_headers)
    assert lookup.get_json() == []


def test_email_lookup_only_returns_own_tenants_users(app, client, tenant, other_tenant):
    factories.make_user(app, tenant.id, user_id="mine", email="shared@example.com")
    factories.make_user(app, other_tenant.id, user_id="theirs", email="shared@example.com")
    mine = client.get("/auth/user?email=shared@example.com", headers=tenant.m2_headers)
    theirs = client.get("/auth/user?email=shared@example.com", headers=other_tenant.m2_headers)
    assert [a["uid"] for a in mine.get_json()] == ["mine"]
    assert [a["uid"] for a in theirs.get_json()] == ["theirs"]


def test_duplicate_uid_check_is_per_tenant(app, client, tenant, other_tenant):
    factories.make_user(app, tenant.id, user_id="taken")
    response = client.post("/auth/user", json={"uid": "taken"}, headers=other_tenant.m2_headers)
    assert response.status_code == 200
    assert_error(
        client.post("/auth/user", json={"uid": "taken"}, headers=tenant.m2_headers),
        409,
        "user_exists",
    )


def test_query_outside_any_tenant_scope_raises(app, tenant):
    factories.make_user(app, tenant.id, user_id="scoped")
    with app.app_context():
        with pytest.raises(TenancyError):
            user_service.find_user("x")
        with pytest.raises(TenancyError):
            user_service.find_user("scoped")


def test_a_count_over_an_entity_named_only_in_from_is_filtered(app, tenant, other_tenant):
    """`select(func.count()).select_from(Model)` names no ORM column, so SQLAlchemy lists no
    mapper for it: the filter must still see the table (it once counted every tenant)."""
    from sqlalchemy import func, select

    from app.core.db import db
    from app.secrets.models import Secret
    from app.users.models import User

    factories.make_user(app, tenant.id, user_id="shared-id")
    factories.make_user(app, tenant.id, user_id="second")
    factories.make_user(app, other_tenant.id, user_id="shared-id")
    with app.app_context():
        with tenant_scope(tenant.id):
            assert db.session.scalar(select(func.count()).select_from(User)) == 2
            counted = select(func.count()).select_from(Secret).where(Secret.user_id == "shared-id")
            assert db.session.scalar(counted) == 0
        with tenant_scope(other_tenant.id):
            assert db.session.scalar(select(func.count()).select_from(User)) == 1
        with pytest.raises(TenancyError):
            db.session.scalar(select(func.count()).select_from(User))


def test_write_outside_any_tenant_scope_raises(app, client, tenant):
    with app.app_context():
        with pytest.raises(TenancyError):
            user_service.create_user(user_id="unscoped")
    assert_error(client.get("/users/unscoped", headers=tenant.m2_headers), 404, "user_not_found")


def test_other_tenant_scope_does_not_find_the_user(app, tenant, other_tenant):
    factories.make_user(app, tenant.id, user_id="scoped", email="scoped@example.com")
    with app.app_context():
        with tenant_scope(other_tenant.id):
            assert user_service.find_user("scoped") is None
            assert user_service.find_by_email("scoped@example.com") == []
        with tenant_scope(tenant.id):
            found = user_service.find_user("scoped")
            assert found is not None and found.tenant_id == tenant.id
        # A user id is unique only within a tenant: looking one up needs a single tenant.
        with all_tenants(), pytest.raises(TenancyError):
            user_service.find_user("scoped")


def test_user_of_another_tenant_cannot_be_flushed_in_this_scope(app, tenant, other_tenant):
    factories.make_user(app, tenant.id, user_id="scoped", display_name="Original")
    with app.app_context():
        with tenant_scope(tenant.id):
            user = user_service.get_user("scoped")
        with pytest.raises(TenancyError), tenant_scope(other_tenant.id):
            user_service.update_user(user=user, changes={"display_name": "Hijacked"}, actor="test")
    with app.app_context(), tenant_scope(tenant.id):
        assert user_service.get_user("scoped").display_name == "Original"


# Every management route that takes an id (the Auth0 Management API v2), with another tenant's key.
MANAGEMENT_ROUTES = [
    ("get", f"/api/v2/users/{USER_ID}", None),
    ("patch", f"/api/v2/users/{USER_ID}", {"user_metadata": {"x": 1}}),
    ("patch", f"/api/v2/users/{USER_ID}", {"blocked": True}),
    ("delete", f"/api/v2/users/{USER_ID}", None),
    ("get", f"/api/v2/users/{USER_ID}/enrollments", None),
    ("delete", f"/api/v2/users/{USER_ID}/multifactor/google-authenticator", None),
    ("get", f"/api/v2/users/{USER_ID}/authentication-methods", None),
    ("delete", f"/api/v2/users/{USER_ID}/authentication-methods/pk_unknown", None),
    ("post", f"/api/v2/users/{USER_ID}/identities", {"provider": "gatehouse", "user_id": "mine"}),
    ("post", "/api/v2/users/mine/identities", {"provider": "gatehouse", "user_id": USER_ID}),
    ("delete", f"/api/v2/users/{USER_ID}/identities/gatehouse/linked", None),
    ("delete", "/api/v2/device-credentials/{credential}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), MANAGEMENT_ROUTES)
def test_other_tenant_gets_404_on_every_management_id_route(
    app, client, tenant, other_tenant, method, path, body
):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    factories.make_user(app, tenant.id, user_id=USER_ID, email=EMAIL)
    factories.make_user(app, tenant.id, user_id="linked")
    factories.make_user(app, other_tenant.id, user_id="mine")
    own = {"Authorization": f"Bearer {tenant.key}"}
    linked = client.post(
        f"/api/v2/users/{USER_ID}/identities",
        json={"provider": "gatehouse", "user_id": "linked"},
        headers=own,
    )
    assert linked.status_code == 201
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    value = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    device = client.post(
        "/api/v2/device-credentials",
        json={
            "device_name": "p",
            "type": "public_key",
            "value": value,
            "device_id": "d",
            "user_id": USER_ID,
        },
        headers=own,
    )
    assert device.status_code == 201
    path = path.replace("{credential}", device.get_json()["id"])
    before = client.get(f"/api/v2/users/{USER_ID}", headers=own).get_json()
    devices = client.get("/api/v2/device-credentials", headers=own).get_json()

    response = getattr(client, method)(
        path, json=body, headers={"Authorization": f"Bearer {other_tenant.key}"}
    )
    error = response.get_json()
    assert response.status_code == 404, error
    assert error["statusCode"] == 404 and error["errorCode"] in (
        "inexistent_user",
        "device_credential_not_found",
    )
    assert USER_ID not in error["message"]
    assert client.get(f"/api/v2/users/{USER_ID}", headers=own).get_json() == before
    assert client.get("/api/v2/device-credentials", headers=own).get_json() == devices
    searched = client.get(
        "/api/v2/users",
        query_string={"q": f"user_id:{USER_ID}"},
        headers={"Authorization": f"Bearer {other_tenant.key}"},
    )
    assert searched.get_json() == []
    by_email = client.get(
        "/api/v2/users-by-email",
        query_string={"email": EMAIL},
        headers={"Authorization": f"Bearer {other_tenant.key}"},
    )
    assert by_email.get_json() == []


# Every connection route that takes an id, for a stored connection and for the tenant's
# database connection (whose id is derived from the tenant), with another tenant's key.
CONNECTION_ROUTES = [
    ("get", None),
    ("patch", {"display_name": "Taken over"}),
    ("delete", None),
]


@pytest.mark.parametrize(("method", "body"), CONNECTION_ROUTES)
@pytest.mark.parametrize("which", ["stored", "database"])
def test_other_tenant_gets_404_on_every_connection_id_route(
    client, tenant, other_tenant, method, body, which
):
    own = {"Authorization": f"Bearer {tenant.key}"}
    made = client.post(
        "/api/v2/connections",
        json={
            "name": "corp",
            "strategy": "github",
            "options": {"client_id": "a", "client_secret": "b"},
        },
        headers=own,
    )
    assert made.status_code == 201
    listed = client.get("/api/v2/connections", headers=own).get_json()
    connection_id = listed[0 if which == "database" else 1]["id"]
    response = getattr(client, method)(
        f"/api/v2/connections/{connection_id}",
        json=body,
        headers={"Authorization": f"Bearer {other_tenant.key}"},
    )
    error = response.get_json()
    assert response.status_code == 404 and error["errorCode"] == "inexistent_connection", error
    assert client.get("/api/v2/connections", headers=own).get_json() == listed
