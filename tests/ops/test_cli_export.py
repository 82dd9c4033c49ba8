"""`flask users export` (issue 24): export → `flask users import --format gatehouse` into a
second tenant round-trips every field and every password (argon2id and an imported
salted md5), the TOTP enrolment and user secrets (encrypted file); without the flags no
hash and no secret leaves; secrets without a passphrase are refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from flask import Flask

from tests import factories
from tests.export_support import FOREIGN_PASSWORD, PASSPHRASE, make_rich_users, snapshot
from tests.factories import PASSWORD, totp_code
from tests.oauth_support import token_request


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["users", *args])


def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase.txt"
    path.write_text(PASSPHRASE + "\n")
    return path


def password_grant(client, tenant_id: str, username: str, password: str, **extra: str):
    return token_request(
        client, tenant_id, grant_type="password", username=username, password=password, **extra
    )


def test_round_trip_into_a_second_tenant(app, client, tenant, other_tenant, tmp_path):
    secrets = make_rich_users(app, client, tenant)
    before = snapshot(app, tenant.id)
    exported = tmp_path / "users.gh"
    secret_file = passphrase_file(tmp_path)
    result = cli(
        app, "export", "--tenant", tenant.id, "--output", str(exported),
        "--include-password-hashes", "--include-mfa-secrets", "--include-secrets",
        "--passphrase-file", str(secret_file), "--gzip",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "exported 2 users (encrypted)" in result.output
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    assert not (tmp_path / "users.gh.partial").exists()
    data = exported.read_bytes()
    assert data.startswith(b"GATEHOUSE-ENC1\n") and secrets["totp"].encode() not in data

    result = cli(
        app, "import", str(exported), "--tenant", other_tenant.id, "--format", "gatehouse",
        "--passphrase-file", str(secret_file),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "inserted 2, updated 0, failed 0, total 2" in result.output

    after = snapshot(app, other_tenant.id)
    assert after == before  # every column, policy, identity, property, secret, key, TOTP
    assert set(after) == {"old", "rich"} and after["rich"]["totp"][0] == "confirmed"
    assert after["rich"]["password_hash"].startswith("$argon2id$")
    assert after["old"]["password_hash"].startswith("$gh-foreign$md5$")

    # Every password signs in on the second tenant; the TOTP enrolment is enforced there.
    needs_code = password_grant(client, other_tenant.id, "rich", PASSWORD)
    assert needs_code.status_code == 403, needs_code.get_data(as_text=True)
    assert needs_code.get_json()["error"] == "mfa_required"
    signed_in = password_grant(
        client, other_tenant.id, "rich", PASSWORD, otp=totp_code(secrets["totp"])
    )
    assert signed_in.status_code == 200, signed_in.get_data(as_text=True)
    assert password_grant(client, other_tenant.id, "old", FOREIGN_PASSWORD).status_code == 200
    assert password_grant(client, other_tenant.id, "old", "wrong password").status_code != 200
    # The first tenant is untouched by all this.
    assert snapshot(app, tenant.id) == before


def test_without_flags_no_hash_or_secret_leaves(app, client, tenant, tmp_path):
    secrets = make_rich_users(app, client, tenant)
    result = cli(app, "export", "--tenant", tenant.id)
    assert result.exit_code == 0, result.output
    body = result.stdout_bytes.split(b"\n", 1)[1]  # past the header, which names the flags
    assert b'"id":"rich"' in body and b'"email":"old@example.com"' in body
    for leaked in (b"argon2", b"$gh-foreign$", b"password_hash", b"totp_secret", b"s3cr3t"):
        assert leaked not in body
    assert secrets["totp"].encode() not in result.stdout_bytes

    hashes_only = cli(app, "export", "--tenant", tenant.id, "--include-password-hashes")
    assert b"$argon2id$" in hashes_only.stdout_bytes
    assert b"totp_secret" not in hashes_only.stdout_bytes.split(b"\n", 1)[1]
    assert secrets["totp"].encode() not in hashes_only.stdout_bytes


def test_secrets_without_a_passphrase_are_refused(app, client, tenant, tmp_path, monkeypatch):
    monkeypatch.delenv("GATEHOUSE_PASSPHRASE", raising=False)
    output = tmp_path / "out.gh"
    for flag in ("--include-mfa-secrets", "--include-secrets"):
        result = cli(app, "export", "--tenant", tenant.id, "--output", str(output), flag)
        assert result.exit_code == 1
        assert f"{flag} needs a passphrase" in result.output
        assert not output.exists()
    missing = cli(app, "export", "--tenant", "no-such-tenant")
    assert missing.exit_code == 1 and "no tenant no-such-tenant" in missing.output

    # The passphrase may come from the environment instead of a file.
    monkeypatch.setenv("GATEHOUSE_PASSPHRASE", PASSPHRASE)
    factories.make_user(app, tenant.id, user_id="solo", email="solo@example.com")
    result = cli(
        app, "export", "--tenant", tenant.id, "--output", str(output), "--include-mfa-secrets"
    )
    assert result.exit_code == 0, result.output
    assert output.read_bytes().startswith(b"GATEHOUSE-ENC1\n")
    assert os.environ["GATEHOUSE_PASSPHRASE"] == PASSPHRASE


def test_import_of_an_encrypted_file_says_what_is_wrong(app, tenant, other_tenant, tmp_path):
    factories.make_user(app, tenant.id, user_id="solo", email="solo@example.com")
    exported = tmp_path / "users.gh"
    secret_file = passphrase_file(tmp_path)
    result = cli(
        app, "export", "--tenant", tenant.id, "--output", str(exported),
        "--passphrase-file", str(secret_file),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase")
    data = exported.read_bytes()
    (tmp_path / "cut.gh").write_bytes(data[:-3])
    flipped = bytearray(data)
    flipped[-30] ^= 0x40
    (tmp_path / "flipped.gh").write_bytes(bytes(flipped))
    for name, passphrase, expected in (
        ("users.gh", wrong, "wrong passphrase"),
        ("cut.gh", secret_file, "truncated"),
        ("flipped.gh", secret_file, "altered"),
    ):
        result = cli(
            app, "import", str(tmp_path / name), "--tenant", other_tenant.id,
            "--format", "gatehouse", "--passphrase-file", str(passphrase),
        )  # fmt: skip
        assert result.exit_code == 1, result.output
        assert expected in result.output and "Traceback" not in result.output
    assert snapshot(app, other_tenant.id) == {}
