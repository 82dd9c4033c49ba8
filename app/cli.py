"""Operator commands: `flask bootstrap`, `flask tenants create|list|delete`, `flask keys
create|revoke|rotate-signing|rotate-encryption`, `flask run-periodic`, `flask users
import|export`, `flask console grant`."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app import encryption
from app.audit import service as audit_service
from app.console import service as console_service
from app.core.db import db
from app.core.errors import AppError
from app.core.jobs import in_tenant
from app.core.security import keyring
from app.core.tenancy import Principal
from app.credentials.foreign_hashes import FirebaseHashConfig
from app.periodic import JOBS, run_job
from app.portability import gatehouse_format as export_format
from app.portability import imports as import_service
from app.portability.records import FileError, Rejected
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
        with in_tenant(tenant.id):
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


# `flask users import|export`: a module-level group so each command can be declared at module
# level next to its helpers (import below, export by its own section) and registered once.
users = AppGroup("users", help="Import and export a tenant's users.")


def _read_hash_config(path: Path) -> FirebaseHashConfig:
    """Firebase's hash parameters: JSON `{base64_signer_key, base64_salt_separator, rounds,
    mem_cost}` (or that object under `hash_config`), or the block the Firebase console
    prints (`hash_config { algorithm: SCRYPT, base64_signer_key: …, rounds: 8, … }`)."""
    raw = path.read_text()
    try:
        config: Any = json.loads(raw)
        if isinstance(config, dict) and isinstance(config.get("hash_config"), dict):
            config = config["hash_config"]
    except ValueError:
        config = {}
        for key, value in re.findall(r"([A-Za-z_0-9]+)\s*:\s*([^,\s}]+)", raw):
            config[key] = int(value) if value.isdigit() else value.strip("\"'")
    if not isinstance(config, dict):
        raise click.BadParameter("not a hash configuration", param_hint="--hash-config")
    if str(config.get("algorithm", "SCRYPT")).upper() != "SCRYPT":
        raise click.BadParameter("only Firebase's SCRYPT is supported", param_hint="--hash-config")
    try:
        return FirebaseHashConfig.from_mapping(config)
    except AppError as exc:
        reasons = "; ".join(str(reason) for reason in (exc.fields or {}).values())
        raise click.BadParameter(reasons or exc.message, param_hint="--hash-config") from exc


class _ProgressReader:
    """The import file, moving a progress bar by the bytes read."""

    def __init__(self, file: BinaryIO, bar: Any) -> None:
        self._file, self._bar = file, bar

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._bar.update(len(data))
        return data


class _ErrorsFile:
    """Rejected users as an Auth0-shaped JSON array `[{user, errors}]`, written as they
    come (never held)."""

    def __init__(self, file: TextIO) -> None:
        self._file, self.count = file, 0
        file.write("[")

    def add(self, rejected: Rejected) -> None:
        self._file.write(",\n" if self.count else "\n")
        self._file.write(json.dumps({"user": rejected.shown, "errors": rejected.errors}))
        self.count += 1

    def close(self) -> None:
        self._file.write("\n]\n" if self.count else "]\n")
        self._file.close()


def _summary_line(summary: import_service.Summary, seconds: float) -> str:
    return (
        f"inserted {summary.inserted}, updated {summary.updated}, failed {summary.failed}, "
        f"total {summary.total}, weak hashes {summary.weak_hashes}; "
        f"{summary.total / seconds:,.0f} users/s"
    )


@users.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", "tenant_id", required=True, help="The tenant to import into.")
@click.option(
    "--format",
    "file_format",
    required=True,
    type=click.Choice(["auth0", "firebase", "gatehouse"]),
    help="auth0: a bulk-import JSON array; firebase: `firebase auth:export --format=json`; "
    "gatehouse: a `flask users export` file.",
)
@click.option(
    "--hash-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Firebase's password hash parameters (JSON, or as the console prints them).",
)
@click.option("--upsert", is_flag=True, help="Update existing users instead of rejecting them.")
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where rejected users go (default FILE.errors.json).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The passphrase of an encrypted gatehouse file (or GATEHOUSE_PASSPHRASE).",
)
@click.option(
    "--batch-size",
    default=import_service.BATCH_SIZE,
    show_default=True,
    type=click.IntRange(1, 50_000),
)
def import_users_command(
    file: Path,
    tenant_id: str,
    file_format: str,
    hash_config: Path | None,
    upsert: bool,
    errors_path: Path | None,
    passphrase_file: Path | None,
    batch_size: int,
) -> None:
    """Import the users of FILE into a tenant, streaming, a batch per transaction. Rejected
    users go to the errors file and do not change the exit code; a file that cannot be
    read (not JSON, truncated) exits 1 with the byte offset, keeping the users before it."""
    if tenant_service.find_tenant(tenant_id) is None:
        raise click.ClickException(f"no tenant {tenant_id}")
    config = _read_hash_config(hash_config) if hash_config is not None else None
    passphrase = (
        passphrase_file.read_text().strip()
        if passphrase_file is not None
        else os.environ.get("GATEHOUSE_PASSPHRASE")
    )
    errors_path = errors_path or file.with_name(file.name + ".errors.json")
    errors = _ErrorsFile(errors_path.open("w", encoding="utf-8"))
    started = time.monotonic()
    failure = None
    # The import's running summary (one object, updated after each committed batch).
    progress: dict[str, import_service.Summary] = {}
    bar = click.progressbar(length=file.stat().st_size, label="Importing", file=sys.stderr)
    try:
        with file.open("rb") as raw, bar, in_tenant(tenant_id):
            summary = import_service.import_stream(
                _ProgressReader(raw, bar),
                format=file_format,
                hash_config=config,
                passphrase=passphrase,
                upsert=upsert,
                batch_size=batch_size,
                on_rejected=errors.add,
                on_progress=lambda summary: progress.setdefault("summary", summary),
            )
    except FileError as exc:
        db.session.rollback()
        failure = exc
    except AppError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    finally:
        errors.close()
    seconds = max(time.monotonic() - started, 1e-9)
    if failure is not None:
        click.echo(_summary_line(progress.get("summary", import_service.Summary()), seconds))
        raise click.ClickException(
            f"{failure.message} (the users before it were imported; "
            f"{errors.count} rejected, see {errors_path})"
        )
    click.echo(_summary_line(summary, seconds))
    if errors.count:
        click.echo(f"{errors.count} rejected users written to {errors_path}")


@users.command("export")
@click.option("--tenant", "tenant_id", required=True, help="The tenant to export.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=Path("-"),
    help="Where the file goes (default: standard output). Written as FILE.partial, then "
    "renamed once complete; owner-only permissions.",
)
@click.option(
    "--format",
    "file_format",
    default="gatehouse",
    show_default=True,
    type=click.Choice(["gatehouse"]),
    help="gatehouse: every field, which `flask users import --format gatehouse` reads back.",
)
@click.option("--include-password-hashes", is_flag=True, help="Add each stored hash as is.")
@click.option(
    "--include-mfa-secrets",
    is_flag=True,
    help="Add TOTP secrets (needs a passphrase: the file is then encrypted).",
)
@click.option(
    "--include-secrets",
    is_flag=True,
    help="Add the values of user secrets (needs a passphrase: the file is then encrypted).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Encrypt the file with this passphrase (or GATEHOUSE_PASSPHRASE).",
)
@click.option("--gzip", "compress", is_flag=True, help="Compress (inside the encryption).")
def export_users_command(
    tenant_id: str,
    output: Path,
    file_format: str,
    include_password_hashes: bool,
    include_mfa_secrets: bool,
    include_secrets: bool,
    passphrase_file: Path | None,
    compress: bool,
) -> None:
    """Export every user of a tenant to a Gatehouse file (the operator's command: with
    --include-password-hashes it holds every hash). With a passphrase the file is
    encrypted (scrypt + AES-256-GCM); TOTP and user secrets go out only encrypted."""
    if tenant_service.find_tenant(tenant_id) is None:
        raise click.ClickException(f"no tenant {tenant_id}")
    passphrase = (
        passphrase_file.read_text().strip()
        if passphrase_file is not None
        else os.environ.get("GATEHOUSE_PASSPHRASE") or None
    )
    if (include_mfa_secrets or include_secrets) and not passphrase:
        flag = "--include-mfa-secrets" if include_mfa_secrets else "--include-secrets"
        raise click.ClickException(
            f"{flag} needs a passphrase (--passphrase-file or GATEHOUSE_PASSPHRASE): "
            "secrets leave only in an encrypted file"
        )
    to_stdout = str(output) == "-"
    partial = output.with_name(output.name + ".partial")
    if to_stdout:
        out: BinaryIO = sys.stdout.buffer
    else:
        # It may hold hashes and secrets: owner only, from the first byte.
        out = os.fdopen(os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb")
    try:
        with in_tenant(tenant_id):
            count = export_format.write(
                out,
                include_password_hashes=include_password_hashes,
                include_mfa_secrets=include_mfa_secrets,
                include_secrets=include_secrets,
                passphrase=passphrase,
                compress=compress,
            )
            db.session.commit()  # the audit event
    except BaseException:
        db.session.rollback()
        if not to_stdout:
            out.close()
            partial.unlink(missing_ok=True)
        raise
    if not to_stdout:
        out.close()
        partial.replace(output)
    click.echo(f"exported {count} users" + (" (encrypted)" if passphrase else ""), err=True)


_batch_size_option = click.option(
    "--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000)
)


def _ring_source() -> str:
    return f"ENCRYPTION_KEYS read from {current_app.config['ENCRYPTION_KEYS_SOURCE']}"


def _refuse_a_foreign_ring() -> None:
    """A ring that is not the one the data needs (a shell without the new key reads the
    old ring from instance/secrets.json in development) is refused by name."""
    problem = encryption.ring_mismatch(keyring())
    if problem:
        raise click.ClickException(
            f"this is not the key ring this instance's data needs: {problem} "
            f"({_ring_source()}); use the ring the rotation was run with"
        )


def _rotate_encryption(batch_size: int) -> None:
    """Re-encrypt every registered column, with a progress bar per column; record the
    rotation when every column is done."""
    ring = keyring()
    _refuse_a_foreign_ring()
    click.echo(f"re-encrypting under key id {ring.current_key_id} (batches of {batch_size})")
    done: list[str] = []
    rewritten: dict[str, int] = {}
    for entry in encryption.ENCRYPTED_COLUMNS:
        pending = encryption.pending_count(entry)
        with click.progressbar(length=pending, label=entry.label, file=sys.stderr) as bar:
            try:
                count = encryption.rotate_column(entry, batch_size=batch_size, on_batch=bar.update)
            except encryption.RotationError as exc:
                db.session.rollback()
                raise click.ClickException(
                    f"cannot decrypt {exc}; put the key that made it back into ENCRYPTION_KEYS "
                    "(after the current one) and run again: finished batches are kept"
                ) from exc
        done.append(f"{entry.label} {count}")
        rewritten[entry.label] = count
    encryption.record_rotation(rewritten=rewritten)
    db.session.commit()
    click.echo(f"re-encrypted: {', '.join(done)}")


def _check_encryption() -> None:
    """Count, per column, the values under the current key, older keys and unknown keys;
    succeed only when the ring is the one the data needs and every value is under its
    first key."""
    ring = keyring()
    older_ids = ring.key_ids[1:]
    click.echo(_ring_source())
    click.echo(f"current key id {ring.current_key_id}; older keys: {list(older_ids) or 'none'}")
    older = unknown = total = 0
    for entry in encryption.ENCRYPTED_COLUMNS:
        counts = encryption.key_counts(entry)
        on_older = sum(n for kid, n in counts.items() if kid in older_ids)
        on_unknown = sum(n for kid, n in counts.items() if kid not in ring.key_ids)
        older, unknown = older + on_older, unknown + on_unknown
        total += sum(counts.values())
        line = f"{entry.label}: {sum(counts.values())} values, {on_older} under older keys"
        click.echo(line + (f", {on_unknown} under keys not in the ring" if on_unknown else ""))
    if unknown:
        raise click.ClickException(
            f"{unknown} values were encrypted with keys that are not in this ring and cannot "
            f"be read ({_ring_source()}); put those keys back"
        )
    _refuse_a_foreign_ring()
    if older:
        raise click.ClickException(
            f"{older} values are still under older keys: run `flask keys rotate-encryption`"
        )
    if not total:
        click.echo("nothing is encrypted yet: there is nothing to rotate")
    elif older_ids:
        click.echo(
            f"every value is under the current key {ring.current_key_id}: the keys after it "
            f"({', '.join(older_ids)}) can be dropped"
        )
    else:
        click.echo(
            f"every value is under key {ring.current_key_id}, the ring's only key: there is "
            "no older key to drop"
        )


# `flask console grant`: the operator's first console access, granted once from a shell
# (never by pasting the root key into a page).
console = AppGroup("console", help="Grant access to the admin console.")


def _only_tenant() -> str:
    """The instance's only tenant; a ClickException asking for --tenant otherwise."""
    found = tenant_service.list_tenants(limit=2).items
    if len(found) != 1:
        raise click.ClickException(
            "This instance has no tenant"
            if not found
            else "Several tenants: name one with --tenant ID"
        )
    return found[0].id


@console.command("grant")
@click.argument("email")
@click.option("--tenant", "tenant_id", default=None, help="The tenant (default: the only one).")
@click.option(
    "--role",
    type=click.Choice(["admin", "support", "viewer"]),
    default="admin",
    show_default=True,
    help="The console role to give.",
)
def grant_console_command(email: str, tenant_id: str | None, role: str) -> None:
    """Give the user with EMAIL a console role, and print the console's address."""
    tenant_id = tenant_id or _only_tenant()
    try:
        with in_tenant(tenant_id):
            member = console_service.grant_member_by_email(
                tenant_id=tenant_id,
                email=email,
                role=f"console:{role}",
                actor=Principal(tenant_id=tenant_id, kind="cli"),
            )
            user_id = member.user_id
    except AppError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    db.session.commit()
    issuer = str(current_app.config["ISSUER"]).rstrip("/")
    click.echo(f"{email} ({user_id}) is console:{role} of tenant {tenant_id}")
    click.echo(f"console: {issuer}/console/?tenant={tenant_id}")


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

    app.cli.add_command(users)
    app.cli.add_command(console)

    secrets_group = AppGroup("secrets", help="Manage per-user secrets.")
    app.cli.add_command(secrets_group)

    @secrets_group.command("reencrypt")
    @_batch_size_option
    def reencrypt_command(batch_size: int) -> None:
        """The same as `keys rotate-encryption` (every encrypted value, not only secrets)."""
        _rotate_encryption(batch_size)

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

    @tenants.command("list")
    def list_tenants_command() -> None:
        """Print every tenant: id, creation time, name."""
        cursor = None
        while True:
            page = tenant_service.list_tenants(limit=100, cursor=cursor)
            for tenant in page.items:
                click.echo(f"{tenant.id}  {tenant.created_at:%Y-%m-%dT%H:%M:%SZ}  {tenant.name}")
            cursor = page.next_cursor
            if cursor is None:
                break
        db.session.commit()

    @tenants.command("delete")
    @click.argument("tenant_id")
    @_batch_size_option
    @click.confirmation_option(prompt="Delete the tenant and everything it owns?")
    def delete_tenant_command(tenant_id: str, batch_size: int) -> None:
        """Delete TENANT_ID with everything it owns, one short transaction per batch
        (run again to finish a stopped deletion)."""
        try:
            with in_tenant(tenant_id):
                rows = tenant_service.delete_tenant(
                    tenant_id=tenant_id,
                    actor="cli",
                    ip=None,
                    batch_size=batch_size,
                    after_batch=db.session.commit,
                )
        except AppError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from exc
        db.session.commit()
        click.echo(f"deleted {tenant_id}: {sum(rows.values())} rows")

    @tenants.command("deleted")
    def deleted_tenants_command() -> None:
        """Print the deletion records of deleted tenants (platform events), newest first."""
        for event in audit_service.list_platform_events(action="tenant.deleted", limit=100).items:
            click.echo(
                f"{event.created_at:%Y-%m-%dT%H:%M:%SZ}  {event.target}  "
                f"{event.data.get('name', '')}  by {event.actor}"
            )
        db.session.commit()

    @keys.command("create")
    @click.argument("tenant_id")
    @click.option("--name", default=None, help="A label for the key.")
    @click.option("--scopes", default="*", help="Space- or comma-separated scopes (default *).")
    def create_key_command(tenant_id: str, name: str | None, scopes: str) -> None:
        """Create an API key for TENANT_ID and print it (shown only once)."""
        scope_list = [s for s in scopes.replace(",", " ").split() if s]
        try:
            with in_tenant(tenant_id):
                issued = tenant_service.issue_api_key(
                    tenant_id=tenant_id, name=name, scopes=scope_list
                )
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

    @keys.command("rotate-encryption")
    @_batch_size_option
    @click.option("--check", is_flag=True, help="Only count values still under older keys.")
    def rotate_encryption_command(batch_size: int, check: bool) -> None:
        """Re-encrypt every encrypted value under the first ENCRYPTION_KEYS key, in batches
        (resumable); --check counts what is left under older keys (exit 1 if any)."""
        if check:
            _check_encryption()
        else:
            _rotate_encryption(batch_size)

    @keys.command("revoke")
    @click.argument("key_id")
    def revoke_key_command(key_id: str) -> None:
        """Revoke the API key KEY_ID."""
        try:
            api_key = tenant_service.get_api_key_all_tenants(key_id)
            with in_tenant(api_key.tenant_id):
                tenant_service.revoke_api_key(tenant_id=api_key.tenant_id, key_id=key_id)
        except AppError as exc:
            raise click.ClickException(exc.message) from exc
        db.session.commit()
        click.echo(f"revoked {key_id}")
