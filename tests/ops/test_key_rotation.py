"""The README's key-rotation procedure, followed literally on a deployment of its own:
two keys, `flask --app wsgi keys rotate-encryption`, `--check`, drop the old key; then
sign-in, secret reads, queued mail and TOTP still work (issue 17: once only user secrets were
re-encrypted and every sign-in answered 500 after the old key was dropped)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import factories
from tests.factories import PASSWORD
from tests.postmark_fake import FakePostmark

HOST = "app.rotation.test"
PM_TOKEN = "pm-rotation-token"
ROTATE = ["flask", "--app", "wsgi", "keys", "rotate-encryption"]


@pytest.fixture()
def old_instance(deployment, postmark: FakePostmark) -> dict[str, Any]:
    """Phase 1, ENCRYPTION_KEYS=<old>: a tenant with a Postmark token, a user who signed
    in (so a signing key exists), a secret, a TOTP enrolment, and a reset mail still
    queued (no worker)."""
    old_key = factories.new_encryption_key()
    app = deployment(ENCRYPTION_KEYS=old_key, POSTMARK_API_URL=postmark.url)
    tenant = factories.make_tenant(
        app,
        "rotating",
        email_from="noreply@example.com",
        postmark_server_token=PM_TOKEN,
        password_reset_hosts=[HOST],
    )
    factories.make_user(app, tenant.id, user_id="ada", email="ada@example.com", password=PASSWORD)
    client = app.test_client()
    tokens = factories.sign_in(client, tenant.id, "ada@example.com", PASSWORD)
    bearer = factories.bearer(tokens["access_token"])
    secret = client.post("/user/ada/secrets", json={"name": "pin", "value": "0042"}, headers=bearer)
    assert secret.status_code == 201, secret.get_data(as_text=True)
    totp = client.post("/users/me/mfa/totp", headers=bearer)  # pending until confirmed
    assert totp.status_code == 201, totp.get_data(as_text=True)
    asked = client.post(
        "/auth/password-reset",
        json={"email": "ada@example.com", "host": HOST},
        headers={"X-Tenant-ID": tenant.id},
    )
    assert asked.get_json() == {"msg": "ok"}
    [queued] = factories.email_deliveries(app, tenant.id)
    assert queued.status == "queued" and postmark.mails() == []
    return {
        "app": app,
        "old": old_key,
        "tenant": tenant,
        "secret": secret.get_json()["id"],
        "totp": totp.get_json()["secret"],
    }


def test_the_readme_rotation_procedure_keeps_everything_working(
    deployment, old_instance: dict[str, Any], postmark: FakePostmark
) -> None:
    tenant, old_key = old_instance["tenant"], old_instance["old"]
    new_key = factories.new_encryption_key()

    # 1. Put a new key first and restart: new writes use it, old values still read.
    both = deployment(ENCRYPTION_KEYS=f"{new_key},{old_key}", POSTMARK_API_URL=postmark.url)
    env = factories.process_env(both)
    before = factories.run_command([*ROTATE, "--check"], env)
    assert before.returncode == 1, before.stdout + before.stderr
    assert "signing keys: 1 values, 1 under older keys" in before.stdout
    assert "still under older keys" in before.stderr

    # 2. Re-encrypt everything under the new key.
    rotated = factories.run_command(ROTATE, env)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert (
        "re-encrypted: user secrets 1, signing keys 1, tenant Postmark tokens 1, mail bodies 1, "
        "TOTP secrets 1" in rotated.stdout
    )

    # 3. The check passes: nothing is left under the old key.
    after = factories.run_command([*ROTATE, "--check"], env)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "every value is under the current key" in after.stdout

    # 4. Drop the old key and restart (the start-up check opens the signing key).
    new_only = deployment(ENCRYPTION_KEYS=new_key, POSTMARK_API_URL=postmark.url)
    started = factories.run_command(
        ["flask", "--app", "wsgi", "tenants", "list"], factories.process_env(new_only)
    )
    assert started.returncode == 0, started.stderr
    assert tenant.id in started.stdout
    client = new_only.test_client()
    assert client.get("/readyz").get_json()["checks"]["keyring"] == "ok"
    tokens = factories.sign_in(client, tenant.id, "ada@example.com", PASSWORD)
    bearer = factories.bearer(tokens["access_token"])
    assert client.get("/user/profile", headers=bearer).status_code == 200
    value = client.get(f"/user/ada/secrets/{old_instance['secret']}/value", headers=bearer)
    assert value.status_code == 200 and value.get_data(as_text=True) == "0042"

    # The mail queued before the rotation is sent by a worker that has only the new key,
    # with the tenant's (re-encrypted) Postmark token.
    with factories.celery_worker_for(new_only):
        mails = factories.wait_until(postmark.mails)
        assert factories.wait_for_value_read_audits(new_only, 1) == 1
    [mail] = mails
    assert mail.headers["X-Postmark-Server-Token"] == PM_TOKEN
    assert mail.body["To"] == "ada@example.com"
    assert f"https://{HOST}/reset-password?token=" in mail.body["TextBody"]
    [delivery] = factories.email_deliveries(new_only, tenant.id)
    assert delivery.status == "sent"

    # The TOTP secret enrolled under the old key confirms with a code of that secret.
    code = factories.totp_code(old_instance["totp"])
    confirmed = client.post("/users/me/mfa/totp/confirm", json={"code": code}, headers=bearer)
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    assert confirmed.get_json()["status"] == "confirmed"


def test_rotation_stops_on_a_value_no_key_opens_and_resumes(
    deployment, old_instance: dict[str, Any]
) -> None:
    """A ring that lacks the old key cannot rotate: one line says which value and what to
    do, exit 1; with the key back the same command finishes the job."""
    new_key = factories.new_encryption_key()
    lacking = deployment(ENCRYPTION_KEYS=new_key)
    # The start-up check already refuses this ring (it cannot open the signing key).
    refused = factories.run_command(ROTATE, factories.process_env(lacking))
    assert refused.returncode == 4
    assert refused.stderr.strip().startswith("ConfigError: ENCRYPTION_KEYS cannot open")
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    # In-process (past the start-up check) the command names the first unreadable value.
    stopped = lacking.test_cli_runner().invoke(args=["keys", "rotate-encryption"])
    assert stopped.exit_code == 1
    assert "cannot decrypt user secrets" in stopped.output
    assert "put the key that made it back" in stopped.output

    both = deployment(ENCRYPTION_KEYS=f"{new_key},{old_instance['old']}")
    rotated = both.test_cli_runner().invoke(args=["keys", "rotate-encryption", "--batch-size", "1"])
    assert rotated.exit_code == 0, rotated.output
    check = both.test_cli_runner().invoke(args=["keys", "rotate-encryption", "--check"])
    assert check.exit_code == 0, check.output


def _shell_reading_the_ring_from(instance: Path, app: Any, ring: str) -> dict[str, str]:
    """The environment of a shell without ENCRYPTION_KEYS: in development the ring then
    comes from `<instance>/secrets.json` (here holding `ring`)."""
    instance.mkdir()
    env = factories.process_env(app, INSTANCE_PATH=str(instance))
    del env["ENCRYPTION_KEYS"]
    secrets = {name: env[name] for name in ("SECRET_KEY", "ROOT_API_KEY")}
    (instance / "secrets.json").write_text(json.dumps({**secrets, "ENCRYPTION_KEYS": ring}))
    return env


def test_check_refuses_a_ring_that_is_not_the_one_the_data_needs(
    deployment, tmp_path: Path
) -> None:
    """Issue 22: after rotating with the new key in the environment, `--check` in a shell
    without it (the old ring, from instance/secrets.json) said "the keys after it can be
    dropped". The finished rotation is recorded; a ring without its key is refused."""
    old_key, new_key = factories.new_encryption_key(), factories.new_encryption_key()
    both = deployment(ENCRYPTION_KEYS=f"{new_key},{old_key}")
    rotated = factories.run_command(ROTATE, factories.process_env(both))
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr

    shell = _shell_reading_the_ring_from(tmp_path / "instance", both, old_key)
    check = factories.run_command([*ROTATE, "--check"], shell)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "can be dropped" not in check.stdout
    [line] = [line for line in check.stderr.splitlines() if line.startswith("Error:")]
    assert "this is not the key ring this instance's data needs" in line
    assert "does not hold that key" in line
    assert f"read from {tmp_path / 'instance' / 'secrets.json'}" in line
    # The shell with the rotation's ring passes.
    check = factories.run_command([*ROTATE, "--check"], factories.process_env(both))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "read from the environment" in check.stdout


def test_a_ring_in_the_wrong_order_never_rotates_back_to_the_old_key(
    deployment, old_instance: dict[str, Any]
) -> None:
    """With the keys swapped (`<old>,<new>`) after a rotation, `--check` used to advise
    running the rotation, which would have put every value back under the old key."""
    old_key, new_key = old_instance["old"], factories.new_encryption_key()
    both = deployment(ENCRYPTION_KEYS=f"{new_key},{old_key}")
    assert factories.run_command(ROTATE, factories.process_env(both)).returncode == 0
    swapped = deployment(ENCRYPTION_KEYS=f"{old_key},{new_key}")
    env = factories.process_env(swapped)
    for command in ([*ROTATE, "--check"], ROTATE):
        refused = factories.run_command(command, env)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "is one the data was rotated away from" in refused.stderr
    assert "re-encrypted" not in refused.stdout
