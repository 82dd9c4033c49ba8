"""`flask users import` (issue 24): a Firebase `auth:export` file made with Firebase's
published scrypt parameters, Django and PHC hashes, the errors file, exit codes, and a
second run with and without --upsert. Users then sign in with the password grant."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.db import db
from app.core.security import firebase_scrypt
from app.core.tenancy import tenant_scope
from app.users.models import Identity, User
from tests.factories import PASSWORD, TenantHandle, count_users, sign_in

# github.com/firebase/scrypt README: the project's parameters and its one user.
SIGNER_KEY = (
    "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA=="
)
HASH_CONFIG = {
    "base64_signer_key": SIGNER_KEY,
    "base64_salt_separator": "Bw==",
    "rounds": 8,
    "mem_cost": 14,
}
VECTOR_SALT = "42xEC+ixf3L2lw=="
VECTOR_HASH = (
    "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ=="
)
VECTOR_PASSWORD = "user1password"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def firebase_hash(password: str, salt: bytes) -> str:
    return b64(
        firebase_scrypt(
            password.encode(),
            salt,
            base64.b64decode("Bw=="),
            base64.b64decode(SIGNER_KEY),
            8,
            14,
        )
    )


def run_import(app: Flask, path: Path, tenant_id: str, *args: str) -> Any:
    return app.test_cli_runner().invoke(
        args=["users", "import", str(path), "--tenant", tenant_id, *args]
    )


def write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def user_row(app: Flask, tenant_id: str, user_id: str) -> User:
    with app.app_context(), tenant_scope(tenant_id):
        user = db.session.scalar(select(User).where(User.id == user_id))
        assert user is not None
        db.session.expunge(user)
        return user


def firebase_export() -> dict[str, Any]:
    salt = b"\x01salt of ada"
    return {
        "users": [
            {
                "localId": "vectorUser0000000000000001",
                "email": "vector@firebase.example.com",
                "emailVerified": True,
                "passwordHash": VECTOR_HASH,
                "salt": VECTOR_SALT,
                "createdAt": "1600000000000",
                "providerUserInfo": [
                    {"providerId": "password", "rawId": "vector@firebase.example.com"}
                ],
            },
            {
                "localId": "adaLovelace00000000000002",
                "email": "ada@firebase.example.com",
                "emailVerified": False,
                "displayName": "Ada Lovelace",
                "photoUrl": "https://example.com/ada.png",
                "passwordHash": firebase_hash(PASSWORD, salt),
                "salt": b64(salt),
                "customAttributes": '{"role": "admin"}',
                "disabled": False,
                "providerUserInfo": [
                    {
                        "providerId": "google.com",
                        "rawId": "1122334455",
                        "email": "ada@gmail.example.com",
                        "displayName": "Ada",
                    },
                    {"providerId": "password", "rawId": "ada@firebase.example.com"},
                ],
            },
            {  # no password at all: a social-only account
                "localId": "socialOnly000000000000003",
                "email": "social@firebase.example.com",
                "providerUserInfo": [{"providerId": "github.com", "rawId": "77"}],
            },
        ]
    }


def test_a_firebase_export_imports_and_its_users_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle, tmp_path: Path
) -> None:
    export = write(tmp_path / "firebase.json", firebase_export())
    config = write(tmp_path / "hash.json", HASH_CONFIG)
    result = run_import(
        app, export, tenant.id, "--format", "firebase", "--hash-config", str(config)
    )
    assert result.exit_code == 0, result.output
    assert "inserted 3, updated 0, failed 0, total 3, weak hashes 0" in result.output
    assert "users/s" in result.output
    assert json.loads((tmp_path / "firebase.json.errors.json").read_text()) == []

    for _ in range(2):  # the second sign-in works too (after any rehash)
        assert sign_in(client, tenant.id, "vector@firebase.example.com", VECTOR_PASSWORD)[
            "access_token"
        ]
        assert sign_in(client, tenant.id, "ada@firebase.example.com", PASSWORD)["access_token"]

    ada = user_row(app, tenant.id, "adaLovelace00000000000002")
    assert ada.display_name == "Ada Lovelace"
    assert ada.photo_url == "https://example.com/ada.png"
    assert ada.app_metadata == {"role": "admin"}
    assert ada.email_verified is False and ada.blocked is False
    vector = user_row(app, tenant.id, "vectorUser0000000000000001")
    assert vector.email_verified is True
    assert vector.created_at.year == 2020
    with app.app_context(), tenant_scope(tenant.id):
        identities = db.session.execute(
            select(Identity.user_id, Identity.provider, Identity.provider_user_id)
        ).all()
    assert sorted(identities) == [
        ("adaLovelace00000000000002", "google.com", "1122334455"),
        ("socialOnly000000000000003", "github.com", "77"),
    ]


def test_the_hash_config_as_the_firebase_console_prints_it(
    app: Flask, client: FlaskClient, tenant: TenantHandle, tmp_path: Path
) -> None:
    export = write(tmp_path / "firebase.json", {"users": firebase_export()["users"][:1]})
    config = write(
        tmp_path / "hash.txt",
        "hash_config {\n  algorithm: SCRYPT,\n"
        f"  base64_signer_key: {SIGNER_KEY},\n"
        "  base64_salt_separator: Bw==,\n  rounds: 8,\n  mem_cost: 14,\n}\n",
    )
    result = run_import(
        app, export, tenant.id, "--format", "firebase", "--hash-config", str(config)
    )
    assert result.exit_code == 0, result.output
    sign_in(client, tenant.id, "vector@firebase.example.com", VECTOR_PASSWORD)


def test_a_firebase_hash_without_the_project_parameters_is_a_per_user_error(
    app: Flask, tenant: TenantHandle, tmp_path: Path
) -> None:
    export = write(tmp_path / "firebase.json", firebase_export())
    result = run_import(app, export, tenant.id, "--format", "firebase")
    assert result.exit_code == 0, result.output
    assert "inserted 1, updated 0, failed 2" in result.output
    errors = json.loads((tmp_path / "firebase.json.errors.json").read_text())
    assert [entry["errors"][0]["code"] for entry in errors] == ["UNSUPPORTED_HASH"] * 2
    assert all("passwordHash" not in entry["user"] for entry in errors)
    assert VECTOR_HASH not in (tmp_path / "firebase.json.errors.json").read_text()


def test_django_and_phc_strings_import_and_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle, tmp_path: Path
) -> None:
    salt = b"seasalt2"
    raw = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, 1000)
    django = f"pbkdf2_sha256$1000${salt.decode()}${b64(raw)}"
    phc = f"$pbkdf2-sha256$i=1000,l=32${b64(salt).rstrip('=')}${b64(raw).rstrip('=')}"
    from argon2 import PasswordHasher, Type

    argon2i = PasswordHasher(type=Type.I, time_cost=1, memory_cost=1024).hash(PASSWORD)
    users = [
        {"email": "django@example.com", "password_hash": django},
        {"email": "phc@example.com", "password_hash": phc},
        {"email": "argon@example.com", "password_hash": argon2i},
        {
            "email": "custom@example.com",
            "custom_password_hash": {
                "algorithm": "pbkdf2",
                "hash": {"value": phc, "encoding": "utf8"},
            },
        },
        # docs/migrating.md's Django recipe: the string as a custom_password_hash.
        {
            "email": "recipe@example.com",
            "user_id": "42",
            "username": "ada",
            "custom_password_hash": {
                "algorithm": "pbkdf2",
                "hash": {"value": django, "encoding": "utf8"},
            },
        },
    ]
    path = write(tmp_path / "users.json", users)
    result = run_import(app, path, tenant.id, "--format", "auth0")
    assert result.exit_code == 0, result.output
    assert "inserted 5, updated 0, failed 0" in result.output
    for user in users:
        for _ in range(2):
            sign_in(client, tenant.id, user["email"], PASSWORD)


def test_running_twice_reports_existing_users_and_upsert_updates_them(
    app: Flask, tenant: TenantHandle, tmp_path: Path
) -> None:
    users = [
        {"email": "one@example.com", "user_id": "one", "name": "One"},
        {"email": "two@example.com", "username": "two", "name": "Two"},
    ]
    path = write(tmp_path / "users.json", users)
    first = run_import(app, path, tenant.id, "--format", "auth0")
    assert "inserted 2, updated 0, failed 0, total 2" in first.output, first.output

    users[0]["name"] = "One, renamed"
    write(path, users)
    again = run_import(app, path, tenant.id, "--format", "auth0")
    assert again.exit_code == 0, again.output
    assert "inserted 0, updated 0, failed 2, total 2" in again.output
    errors = json.loads((tmp_path / "users.json.errors.json").read_text())
    assert [entry["errors"][0]["code"] for entry in errors] == ["DUPLICATED_USER"] * 2
    assert "upsert parameter is false" in errors[0]["errors"][0]["message"]
    assert user_row(app, tenant.id, "one").display_name == "One"  # untouched

    upserted = run_import(app, path, tenant.id, "--format", "auth0", "--upsert")
    assert "inserted 0, updated 2, failed 0, total 2" in upserted.output, upserted.output
    assert user_row(app, tenant.id, "one").display_name == "One, renamed"
    assert count_users(app, tenant.id) == 2


def test_a_file_that_is_not_json_exits_non_zero_with_the_offset(
    app: Flask, tenant: TenantHandle, tmp_path: Path
) -> None:
    path = write(tmp_path / "users.json", '[{"email": "a@example.com"}, nope]')
    result = run_import(app, path, tenant.id, "--format", "auth0")
    assert result.exit_code == 1, result.output
    assert "not valid JSON at byte" in result.output
    assert count_users(app, tenant.id) == 1  # the user before the damage is kept


def test_a_wrong_top_level_shape_is_refused(
    app: Flask, tenant: TenantHandle, tmp_path: Path
) -> None:
    path = write(tmp_path / "users.json", {"users": []})
    result = run_import(app, path, tenant.id, "--format", "auth0")
    assert result.exit_code == 1 and "JSON array" in result.output, result.output
    firebase = write(tmp_path / "firebase.json", [{"localId": "x"}])
    result = run_import(app, firebase, tenant.id, "--format", "firebase")
    assert result.exit_code == 1 and '{"users"' in result.output, result.output


def test_an_unknown_tenant_is_refused(app: Flask, tmp_path: Path) -> None:
    path = write(tmp_path / "users.json", [])
    result = run_import(app, path, "no-such-tenant", "--format", "auth0")
    assert result.exit_code == 1 and "no tenant" in result.output


def test_a_truncated_file_exits_non_zero_at_the_cut(
    app: Flask, tenant: TenantHandle, tmp_path: Path
) -> None:
    whole = json.dumps([{"email": f"t{n}@example.com"} for n in range(50)]).encode()
    cut = len(whole) * 2 // 3
    path = tmp_path / "users.json"
    path.write_bytes(whole[:cut])
    result = run_import(app, path, tenant.id, "--format", "auth0", "--batch-size", "10")
    assert result.exit_code == 1, result.output
    assert f"not valid JSON at byte {cut}: parse error: premature EOF" in result.output
    imported = count_users(app, tenant.id)
    assert 30 <= imported < 50
    assert f"inserted {imported}, updated 0, failed 0, total {imported}," in result.output


def test_a_bad_hash_config_is_refused_before_anything_is_read(
    app: Flask, tenant: TenantHandle, tmp_path: Path
) -> None:
    export = write(tmp_path / "firebase.json", firebase_export())
    for config in (
        {"rounds": 8},
        {**HASH_CONFIG, "algorithm": "BCRYPT"},
        {**HASH_CONFIG, "mem_cost": 99},
    ):
        path = write(tmp_path / "hash.json", config)
        result = run_import(
            app, export, tenant.id, "--format", "firebase", "--hash-config", str(path)
        )
        assert result.exit_code == 2 and "--hash-config" in result.output, result.output
    assert count_users(app, tenant.id) == 0
