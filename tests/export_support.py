"""Users holding every field Gatehouse keeps, for the export tests (the Gatehouse file,
its round trip through `flask users export` / `import`), and a snapshot of everything a
tenant holds for a user, to compare two tenants field by field."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from app.core import security
from app.core.db import db
from app.core.tenancy import Principal, tenant_scope
from app.credentials import devices, foreign_hashes, mfa
from app.credentials.models import DeviceCredential, MfaEnrolment
from app.properties import service as property_service
from app.properties.models import Property
from app.secrets import service as secret_service
from app.secrets.models import Secret
from app.users import policies as policy_service
from app.users import service as user_service
from app.users.models import User
from tests import factories
from tests.factories import PASSWORD, bearer, sign_in, totp_code

PASSPHRASE = "a long export passphrase"
FOREIGN_PASSWORD = "imported password 1"
# An Auth0 custom_password_hash: salted md5 of FOREIGN_PASSWORD (the salt as prefix).
MD5_HASH = {
    "algorithm": "md5",
    "hash": {"value": "", "encoding": "hex"},
    "salt": {"value": "pepper", "encoding": "utf8", "position": "prefix"},
}

PROFILE = {
    "email_verified": True,
    "display_name": "Rich Person",
    "first_name": "Rich",
    "last_name": "Person",
    "nickname": "richie",
    "photo_url": "https://example.com/rich.png",
    "phone_number": "+15550100",
    "permissions_group": "editors",
    "custom_scopes": ["read:reports", "write:reports"],
    "settings": [{"name": "theme", "value": "dark"}],
    "user_metadata": {"color": "blue", "nested": {"n": 1}},
    "app_metadata": {"plan": "pro", "roles": ["a", "b"]},
    "require_twofactor_auth": False,
    "device_token": "apns-token-1",
    "device_type": "ios",
}
POLICIES = [
    {"resource": "doc-1", "resource_type": "document", "type": "read"},
    {"resource": "doc-2", "resource_type": "document", "type": "admin"},
]


def md5_custom_hash(password: str) -> dict[str, Any]:
    digest = hashlib.md5(b"pepper" + password.encode()).hexdigest()  # the source's own hash
    return {**MD5_HASH, "hash": {"value": digest, "encoding": "hex"}}


def public_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def make_rich_users(app, client, tenant) -> dict[str, str]:
    """Two users holding every field Gatehouse keeps: `rich` (argon2id password, profile,
    policies, a linked identity, properties, secrets, a device key, a confirmed TOTP) and
    `old` (an imported salted-md5 hash); a third, `linked`, is linked into `rich`.
    Returns `{"totp": secret}`."""
    factories.make_user(
        app, tenant.id, user_id="rich", username="rich", email="rich@example.com",
        password=PASSWORD, **PROFILE,
    )  # fmt: skip
    factories.make_user(app, tenant.id, user_id="old", username="old", email="old@example.com")
    factories.make_user(
        app, tenant.id, user_id="linked", username="linked", email="linked@example.com",
        password=PASSWORD, display_name="Linked One",
    )  # fmt: skip
    actor = Principal(tenant_id=tenant.id, scopes=frozenset({"*"}), kind="system")
    with app.app_context(), tenant_scope(tenant.id):
        rich = user_service.get_user("rich")
        policy_service.replace_policies(user=rich, policies=POLICIES)
        property_service.create_property(user_id="rich", name="shoe", value={"size": 43})
        property_service.create_property(user_id="rich", name="count", value=7)
        secret_service.create_secret(user_id="rich", name="api-token", value="s3cr3t value")
        devices.create_public_key(
            actor=actor, user_id="rich", device_name="Phone", device_id="dev-1",
            value=public_key_pem(), client_id="app-1",
        )  # fmt: skip
        old = user_service.get_user("old")
        old.password_hash = foreign_hashes.from_custom_password_hash(
            md5_custom_hash(FOREIGN_PASSWORD)
        )
        db.session.commit()
    linked = client.post(
        "/api/v2/users/rich/identities",
        json={"provider": "gatehouse", "user_id": "linked"},
        headers=tenant.headers,
    )
    assert linked.status_code == 201, linked.get_data(as_text=True)
    token = sign_in(client, tenant.id, "rich")["access_token"]
    started = client.post("/users/me/mfa/totp", headers=bearer(token))
    assert started.status_code == 201, started.get_data(as_text=True)
    secret = started.get_json()["secret"]
    confirmed = client.post(
        "/users/me/mfa/totp/confirm", json={"code": totp_code(secret)}, headers=bearer(token)
    )
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    return {"totp": secret}


# Columns that are a session's or a row's bookkeeping, not the user's data: an import
# starts them afresh (updated_at is the import's own write time).
VOLATILE = {
    "tenant_id",
    "updated_at",
    "version",
    "password_tag",
    "session_generation",
    "scope_version",
    "profile_version",  # the kept views' cache version: numbered by the database
    "second_factor_failures",
    "last_activity_at",
    "tokens_valid_after",
}


def snapshot(app, tenant_id: str) -> dict[str, dict[str, Any]]:
    """Everything the tenant holds for each user, by user id: the row's columns (but
    VOLATILE), policies, linked identities, properties, secret values, device keys and the
    TOTP enrolment (its secret in clear)."""
    users: dict[str, dict[str, Any]] = {}
    with app.app_context(), tenant_scope(tenant_id):
        for user in db.session.scalars(select(User).order_by(User.id)):
            row = {
                column.key: getattr(user, column.key)
                for column in User.__table__.columns
                if column.key not in VOLATILE
            }
            row["policies"] = [(p.resource, p.resource_type, p.type) for p in user.policies]
            row["identities"] = [i.as_dict() for i in user.linked_identities]
            users[user.id] = row
        for prop in db.session.scalars(select(Property)):
            users[prop.user_id].setdefault("properties", {})[prop.name] = prop.value
        for secret in db.session.scalars(select(Secret)):
            value = security.keyring().decrypt(
                secret.value_encrypted, secret_service.associated_data(secret)
            )
            users[secret.user_id].setdefault("secrets", {})[secret.name] = value.decode()
        for device in db.session.scalars(select(DeviceCredential)):
            users[device.user_id].setdefault("devices", []).append(
                (device.device_name, device.device_id, device.type, device.value,
                 device.client_id, device.created_at)
            )  # fmt: skip
        for enrolment in db.session.scalars(select(MfaEnrolment)):
            users[enrolment.user_id]["totp"] = (enrolment.status, mfa.totp_secret(enrolment))
    return users
