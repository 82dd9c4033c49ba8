"""Device credentials through the Auth0 SDK: public keys checked with `cryptography`,
created for the calling user or a named one, listed with filters, deleted; a user manages
only its own."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from auth0.management.core.api_error import ApiError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests import factories
from tests.factories import PASSWORD, auth0_client, sign_in

SPKI = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def base_url(app) -> Iterator[str]:
    with factories.serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(private) -> str:
    return private.public_key().public_bytes(*SPKI).decode()


def error_of(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    return caught.value


def create(sdk, value: str, device_id: str = "dev-1", **body):
    options = {"additional_body_parameters": body} if body else None
    return sdk.device_credentials.create_public_key(
        device_name="Phone",
        type="public_key",
        value=value,
        device_id=device_id,
        client_id="app-1",
        request_options=options,
    )


def test_api_key_creates_lists_and_deletes_for_a_named_user(app, base_url, tenant, rsa_key):
    factories.make_user(app, tenant.id, user_id="dora")
    factories.make_user(app, tenant.id, user_id="eve")
    sdk = auth0_client(base_url, tenant.key, tenant.id)
    first = create(sdk, pem(rsa_key), user_id="dora")
    assert first.id.startswith("dcr_")
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    create(sdk, base64.b64encode(der).decode(), device_id="dev-2", user_id="dora")
    ec_pem = pem(ec.generate_private_key(ec.SECP256R1()))
    create(sdk, ec_pem, device_id="dev-3", user_id="eve")

    listed = sdk.device_credentials.list(user_id="dora", include_totals=True)
    assert listed.response.total == 2
    assert [(d.device_id, d.user_id, d.type, d.client_id) for d in listed.items] == [
        ("dev-1", "dora", "public_key", "app-1"),
        ("dev-2", "dora", "public_key", "app-1"),
    ]
    assert [d.device_id for d in sdk.device_credentials.list(type="public_key")] == [
        "dev-1",
        "dev-2",
        "dev-3",
    ]
    assert list(sdk.device_credentials.list(client_id="other-app")) == []

    sdk.device_credentials.delete(first.id)
    assert [d.device_id for d in sdk.device_credentials.list(user_id="dora")] == ["dev-2"]
    gone = error_of(sdk.device_credentials.delete, first.id)
    assert gone.status_code == 404
    duplicate = error_of(create, sdk, ec_pem, device_id="dev-3", user_id="eve")
    assert duplicate.status_code == 409
    nobody = error_of(create, sdk, ec_pem, device_id="dev-9", user_id="ghost")
    assert nobody.status_code == 404 and nobody.body["errorCode"] == "inexistent_user"
    unnamed = error_of(create, sdk, ec_pem, device_id="dev-9")
    assert unnamed.status_code == 400 and "'user_id'" in unnamed.body["message"]


def test_public_key_must_load(app, base_url, tenant, rsa_key):
    factories.make_user(app, tenant.id, user_id="dora")
    sdk = auth0_client(base_url, tenant.key)
    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    truncated = pem(rsa_key)[:120] + "\n-----END PUBLIC KEY-----\n"
    for bad in (
        "not a key",
        private_pem,
        truncated,
        base64.b64encode(b"junk").decode(),
        "x" * 20000,
    ):
        error = error_of(create, sdk, bad, user_id="dora")
        assert error.status_code == 400 and error.body["errorCode"] == "invalid_body"
        assert "'value'" in error.body["message"]
    wrong_type = app.test_client().post(
        "/api/v2/device-credentials",
        json={"device_name": "P", "type": "refresh_token", "value": pem(rsa_key), "device_id": "d"},
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert wrong_type.status_code == 400 and "'type'" in wrong_type.get_json()["message"]
    assert list(sdk.device_credentials.list()) == []


def test_user_manages_only_its_own_devices(app, client, base_url, tenant, rsa_key):
    factories.make_user(app, tenant.id, user_id="dora", username="dora", password=PASSWORD)
    factories.make_user(app, tenant.id, user_id="eve")
    others = create(auth0_client(base_url, tenant.key), pem(rsa_key), user_id="eve")
    token = sign_in(client, tenant.id, "dora", PASSWORD)["access_token"]
    sdk = auth0_client(base_url, token)

    mine = create(sdk, pem(rsa_key))
    assert [(d.id, d.user_id) for d in sdk.device_credentials.list()] == [(mine.id, "dora")]
    assert [d.user_id for d in sdk.device_credentials.list(user_id="dora")] == ["dora"]
    for call, args, kwargs in (
        (sdk.device_credentials.list, (), {"user_id": "eve"}),
        (create, (sdk, pem(rsa_key), "dev-2"), {"user_id": "eve"}),
    ):
        error = error_of(call, *args, **kwargs)
        assert error.status_code == 403 and error.body["errorCode"] == "insufficient_scope"
    # Another user's credential answers as an unknown one: its ids cannot be probed.
    for unseen in (others.id, "dcr_000000000000000000000000"):
        error = error_of(sdk.device_credentials.delete, unseen)
        assert error.status_code == 404
        assert error.body["errorCode"] == "device_credential_not_found"
    sdk.device_credentials.delete(mine.id)
    assert list(sdk.device_credentials.list()) == []
    admin = auth0_client(base_url, tenant.key)
    assert [d.id for d in admin.device_credentials.list()] == [others.id]


def test_a_user_changes_its_device_keys_only_after_a_recent_sign_in(
    app, client, base_url, tenant, rsa_key
):
    """A device key is a credential (SPEC §8): a refreshed token whose sign-in is older
    than REAUTH_MAX_AGE_SECONDS neither adds nor removes one."""
    factories.make_user(app, tenant.id, user_id="dora", username="dora", password=PASSWORD)
    fresh = auth0_client(base_url, sign_in(client, tenant.id, "dora", PASSWORD)["access_token"])
    mine = create(fresh, pem(rsa_key))
    stale_token = factories.stale_session(app, client, tenant.id, "dora", PASSWORD)
    stale = auth0_client(base_url, stale_token["access_token"])

    for call, args in (
        (create, (stale, pem(rsa_key), "dev-2")),
        (stale.device_credentials.delete, (mine.id,)),
    ):
        error = error_of(call, *args)
        assert error.status_code == 401 and error.body["errorCode"] == "reauthentication_required"
    assert [d.id for d in stale.device_credentials.list()] == [mine.id]  # reading is fine
    fresh.device_credentials.delete(mine.id)
    assert list(fresh.device_credentials.list()) == []
