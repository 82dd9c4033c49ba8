"""Operator commands: `flask bootstrap`, `flask tenants create`, `flask keys create|revoke`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.core.db import db
from app.core.errors import AppError
from app.core.security import KeyRingError
from app.periodic import JOBS, run_job
from app.secrets import service as secret_service
from app.tenants import service as tenant_service
from app.tokens import signing

DEMO_TENANT = "demo"


def _bootstrap_file() -> Path:
    return Path(current_app.instance_path) / "bootstrap.json"


def _reusable_demo_key() -> dict[str, str] | None:
    """The demo tenant and key written by an earlier bootstrap, if the key still works."""
    path = _bootstrap_file()
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    try:
        api_key = tenant_service.authenticate_api_key(saved["api_key"])
    except (AppError, KeyError):
        return None
    return saved if api_key.tenant_id == saved.get("tenant_id") else None


def bootstrap() -> dict[str, str]:
    """Create (once) the demo tenant and its API key; reuse them on later runs."""
    saved = _reusable_demo_key()
    if saved is None:
        tenant = tenant_service.find_tenant_by_name(DEMO_TENANT) or tenant_service.create_tenant(
            name=DEMO_TENANT, settings={"allow_user_token_management": True}
        )
        issued = tenant_service.issue_api_key(tenant_id=tenant.id, name="demo key")
        db.session.commit()
        saved = {"tenant_id": tenant.id, "api_key": issued.raw_key}
        path = _bootstrap_file()
        descriptor = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:  # it holds an API key: owner only
            file.write(json.dumps(saved, indent=2))
        path.chmod(0o600)
    else:
        db.session.commit()
    return saved


def register_cli(app: Flask) -> None:
    @app.cli.command("bootstrap")
    def bootstrap_command() -> None:
        """Create the demo tenant and API key (idempotent) and print the credentials."""
        saved = bootstrap()
        click.echo(f"Demo tenant id : {saved['tenant_id']}")
        click.echo(f"Demo API key   : {saved['api_key']}")
        click.echo(f"Root API key   : {current_app.config['ROOT_API_KEY']}")

    @app.cli.command("run-periodic")
    @click.argument("name", required=False, type=click.Choice(sorted(JOBS)))
    def run_periodic_command(name: str | None) -> None:
        """Run one periodic job (or all of them) once, as beat would."""
        for job in [name] if name else sorted(JOBS):
            for task_name, result in run_job(job).items():
                click.echo(f"{job}: {task_name} -> {result}")
        db.session.commit()

    secrets_group = AppGroup("secrets", help="Manage per-user secrets.")
    app.cli.add_command(secrets_group)

    @secrets_group.command("reencrypt")
    @click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000))
    def reencrypt_command(batch_size: int) -> None:
        """Rewrite every secret under the current (first) ENCRYPTION_KEYS key, in batches."""
        total = 0
        while True:
            try:
                done = secret_service.reencrypt_batch(batch_size=batch_size)
            except KeyRingError as exc:
                db.session.rollback()
                raise click.ClickException(
                    f"a secret cannot be decrypted ({exc}); put the key that made it back "
                    f"into ENCRYPTION_KEYS (after the current one) and run again"
                ) from exc
            db.session.commit()  # one short transaction per batch
            total += done
            if done < batch_size:
                break
        click.echo(f"re-encrypted {total} secrets")

    tenants = AppGroup("tenants", help="Manage tenants.")
    keys = AppGroup("keys", help="Manage API keys.")
    app.cli.add_command(tenants)
    app.cli.add_command(keys)

    @tenants.command("create")
    @click.argument("name")
    def create_tenant_command(name: str) -> None:
        """Create a tenant and print its id."""
        tenant_id = tenant_service.create_tenant(name=name).id
        db.session.commit()
        click.echo(tenant_id)

    @keys.command("create")
    @click.argument("tenant_id")
    @click.option("--name", default=None, help="A label for the key.")
    @click.option("--scopes", default="*", help="Space- or comma-separated scopes (default *).")
    def create_key_command(tenant_id: str, name: str | None, scopes: str) -> None:
        """Create an API key for TENANT_ID and print it (shown only once)."""
        scope_list = [s for s in scopes.replace(",", " ").split() if s]
        try:
            issued = tenant_service.issue_api_key(tenant_id=tenant_id, name=name, scopes=scope_list)
        except AppError as exc:
            raise click.ClickException(exc.message) from exc
        key_id = issued.api_key.id
        db.session.commit()
        click.echo(f"id : {key_id}")
        click.echo(f"key: {issued.raw_key}")

    @keys.command("rotate-signing")
    def rotate_signing_command() -> None:
        """Make a new current signing key; older keys verify until their tokens expire."""
        kid = signing.rotate_signing_key().kid
        db.session.commit()
        click.echo(f"new signing key: {kid}")

    @keys.command("revoke")
    @click.argument("key_id")
    def revoke_key_command(key_id: str) -> None:
        """Revoke the API key KEY_ID."""
        try:
            tenant_service.revoke_api_key_by_id(key_id)
        except AppError as exc:
            raise click.ClickException(exc.message) from exc
        db.session.commit()
        click.echo(f"revoked {key_id}")
