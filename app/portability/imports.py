"""The import engine: write batches of `UserRecord`s (from app.portability.sources) into
the current tenant, in bulk, with Auth0's rules for users that already exist.

- `apply` writes one batch: `prepare` (no database: duplicates inside the batch, weak
  hashes, each new user's row) then `write`: one query finds the batch's existing users
  (by id, email or username), new users go in with one COPY on PostgreSQL (one
  executemany elsewhere), their TOTP enrolments and identities with one statement each.
  It takes a per-tenant advisory lock, so batches of imports into one tenant never race
  on the same email.
- `import_stream` is the CLI's path (in process, a commit per batch: the CLI is an edge).
  It prepares a batch in the reading thread while a writer thread writes the previous
  one, and in a tenant that started empty it skips the look-up of keys it never wrote
  (`Written`).
- `start_import` / `run_import` are the API's: the upload is stored in the job's chunks,
  and the Celery task streams it, committing each batch with the job's counters and resume
  point (`records_done`) in the same transaction, so a killed worker leaves no half-written
  batch and the rerun skips exactly what was written.

Upsert (Auth0's rules): without it, a user matching an existing one by email, user_id or
username is rejected (DUPLICATED_USER). With it, the existing user matched by email (else
by user_id, else by username) is updated with the fields the file gives: profile fields,
metadata (replaced whole, as Auth0 does), the password hash (a changed hash also ends the
user's sessions) and the TOTP secret. `email`, `user_id` and `username` are never changed
by an upsert; a record whose identifiers point at two different users is rejected.

The same user twice in one file is rejected for the later copy (DUPLICATED_USER), upsert
or not. Inside a batch a dict sees it; across batches, every row an import writes gets the
import's own `updated_at` (its "marker"), so an existing row carrying the marker was
written by this very import (earlier in the file). This keeps a million-user import's
memory flat: no set of every key seen.
"""

from __future__ import annotations

import contextvars
import functools
import gc
import json
import logging
import queue
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO

import psycopg
from flask import current_app
from sqlalchemy import (
    ARRAY,
    JSON,
    Select,
    String,
    any_,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from app.audit import service as audit_service
from app.core.db import db, lock_until_commit, utcnow
from app.core.errors import Conflict, PayloadTooLarge
from app.core.jobs import enqueue_after_commit
from app.core.tenancy import current_tenant_id
from app.credentials import foreign_hashes, mfa
from app.credentials.models import MfaEnrolment
from app.portability import jobs, sources, user_lines
from app.portability.models import (
    COMPLETED,
    FAILED,
    IMPORT,
    INPUT,
    PENDING,
    PROCESSING,
    TransferJob,
)
from app.portability.records import FileError, Rejected, UserRecord
from app.portability.sources import JsonObject
from app.tenants import service as tenant_service
from app.users.models import Identity, Policy, User

log = logging.getLogger(__name__)

BATCH_SIZE = 5000  # measured: 2 000 → 20.5k users/s, 5 000 → 23k, 10 000 → 24k but 276 MB
DUPLICATE_IN_FILE = "The user appears more than once in the file"
EXISTS = "The user already exists and upsert parameter is false"
AMBIGUOUS = "The user's email, user_id and username match different existing users"

_USERS = User.__table__
# Columns every new row gets as is (NOT NULL ones without a server default included).
_NEW_ROW = {
    "username": None,
    "username_normalized": None,
    "email": None,
    "email_normalized": None,
    "email_verified": False,
    "display_name": None,
    "first_name": None,
    "last_name": None,
    "nickname": None,
    "photo_url": None,
    "phone_number": None,
    "blocked": False,
    "permissions_group": None,
    "custom_scopes": [],
    "settings": [],
    "user_metadata": {},
    "app_metadata": {},
    "require_twofactor_auth": False,
    "device_token": None,
    "device_type": None,
    "password_hash": None,
    "password_tag": None,  # set at the first sign-in (core.security.password_tag)
    "second_factor_failures": 0,
    "last_activity_at": None,
    "last_login_at": None,
    "logins_count": 0,
    "tokens_valid_after": None,
    "session_generation": 0,
    "scope_version": 0,
    "version": 1,
    "profile_version": 0,  # never numbered yet (users.models)
}


@dataclass
class Summary:
    """What an import did: Auth0's job summary plus how many weak hashes came in."""

    inserted: int = 0
    updated: int = 0
    failed: int = 0
    total: int = 0
    weak_hashes: int = 0

    def add(self, other: Summary) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.failed += other.failed
        self.total += other.total
        self.weak_hashes += other.weak_hashes

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _reject(record: UserRecord, message: str, path: str) -> Rejected:
    return Rejected(
        record.index, record.shown, [{"code": "DUPLICATED_USER", "message": message, "path": path}]
    )


def _lock_tenant(tenant_id: str) -> None:
    """Serialize the batches of every import into this tenant until the transaction ends
    (PostgreSQL; other databases have a single writer anyway)."""
    lock_until_commit(f"import:{tenant_id}")
    if db.session.get_bind().dialect.name == "postgresql":
        # The look-up of a batch's existing users is the same statement every batch: once
        # psycopg prepares it, PostgreSQL may settle on a generic plan, where `= ANY($1)`
        # compares each row with every key of the batch instead of hashing them.
        db.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        # No wait for the WAL flush at each batch's commit: a database crash may lose the
        # last batches, but never half of one (the resume point moves with its batch, and
        # the CLI's rerun finds what is missing); durability is not what a bulk load's
        # commit is for.
        db.session.execute(text("SET LOCAL synchronous_commit = off"))


def _keys(record: UserRecord) -> tuple[str | None, str | None]:
    email = record.email.casefold() if record.email is not None else None
    username = record.username.casefold() if record.username is not None else None
    return email, username


def _created_at(record: UserRecord, default: datetime) -> datetime:
    if record.created_at:
        try:
            value = datetime.fromisoformat(record.created_at)
            if value.tzinfo is not None:
                return value
        except ValueError:
            pass
    return default


class Written:
    """The keys (ids, emails, usernames) a CLI import has written, as a Bloom filter (8 MB,
    about 0.2 % false positives at a million users): for an import into a tenant that had
    no users when it started, a key the filter has never seen cannot match a user, so
    only the others are looked up. Most batches of a migration then need no look-up.
    Should an API import job of the tenant be pending or running at a batch, the filter
    stops being trusted; a second CLI import of the tenant is refused while one runs
    (`_cli_import_running`)."""

    BITS = 1 << 26
    _SALTS = {"id": 0x5BD1E995, "email": 0x27D4EB2F, "username": 0x165667B1}

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS >> 3)
        self.trusted = True  # False once another import may write into the tenant too

    def _positions(self, kind: str, key: str) -> tuple[int, int, int]:
        first = hash(key) ^ self._SALTS[kind]
        second = (first >> 32) | 1
        mask = self.BITS - 1
        return first & mask, (first + second) & mask, (first + 2 * second) & mask

    def add(self, kind: str, key: str) -> None:
        for position in self._positions(kind, key):
            self._bits[position >> 3] |= 1 << (position & 7)

    def maybe(self, kind: str, key: str) -> bool:
        if not self.trusted:
            return True
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(kind, key))


def _import_jobs_active(tenant_id: str) -> bool:
    table = TransferJob.__table__
    found = db.session.execute(
        select(table.c.id)
        .where(
            table.c.tenant_id == tenant_id,
            table.c.type == IMPORT,
            table.c.status.in_((PENDING, PROCESSING)),
        )
        .limit(1)
    ).first()
    return found is not None


# The advisory lock namespace of running CLI imports (pg_try_advisory_lock(ns, key)).
_CLI_IMPORT_LOCKS = 240001


@contextmanager
def _cli_import_running(tenant_id: str) -> Iterator[None]:
    """Hold, for the whole CLI import, an advisory lock naming the tenant, on a connection
    of its own (a session-level lock outlives the batches' transactions): a second CLI
    import of the tenant is refused while this one runs, so no two of them trust their
    `Written` filters side by side."""
    if db.engine.dialect.name != "postgresql":
        yield
        return
    key = {"ns": _CLI_IMPORT_LOCKS, "tenant": tenant_id}
    with db.engine.connect() as marker:
        taken = marker.execute(
            text("SELECT pg_try_advisory_lock(:ns, hashtext(:tenant))"), key
        ).scalar_one()
        marker.commit()
        if not taken:
            raise Conflict(
                "Another import into this tenant is running: wait for it to end",
                code="import_running",
            )
        try:
            yield
        finally:
            marker.execute(text("SELECT pg_advisory_unlock(:ns, hashtext(:tenant))"), key)
            marker.commit()


def _one_cli_import_at_a_time(function: Callable[..., Summary]) -> Callable[..., Summary]:
    """Run the import holding `_cli_import_running` for the tenant in scope."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Summary:
        with _cli_import_running(current_tenant_id()):
            return function(*args, **kwargs)

    return wrapper


def tenant_has_users(tenant_id: str) -> bool:
    """Whether the tenant holds any user (an import into an empty one may use `Written`)."""
    found = db.session.execute(
        select(_USERS.c.id).where(_USERS.c.tenant_id == tenant_id).limit(1)
    ).first()
    return found is not None


@dataclass
class Prepared:
    """A batch checked without the database: duplicates inside it rejected, weak hashes
    counted (and dropped for a tenant that wants resets), and each remaining record's row
    built, ready to insert. `prepare` makes it; `write` puts it in the database."""

    tenant_id: str
    marker: datetime
    # (record, normalized email, normalized username, user id, password hash as stored,
    # the new user's row as COPY takes it)
    items: list[tuple[UserRecord, str | None, str | None, str, str | None, list[Any]]]
    rejected: list[Rejected]
    ids: set[str]
    emails: set[str]
    usernames: set[str]
    total: int
    weak_hashes: int


def weak_reset(tenant_id: str) -> bool:
    """Whether the tenant wants users with a weak imported hash to reset their password."""
    return tenant_service.get_tenant(tenant_id).weak_password_hashes == "reset"


def prepare(
    records: list[UserRecord], *, tenant_id: str, marker: datetime, reset_weak: bool
) -> Prepared:
    """The database-free half of a batch (the CLI runs it in its reading thread, while the
    previous batch is written)."""
    seen_ids: set[str] = set()
    seen_emails: set[str] = set()
    seen_usernames: set[str] = set()
    prepared = Prepared(
        tenant_id, marker, [], [], seen_ids, seen_emails, seen_usernames, len(records), 0
    )
    template, positions, json_positions = _TEMPLATE, _POSITIONS, _JSON_POSITION_SET
    at_tenant, at_id = positions["tenant_id"], positions["id"]
    at_username, at_username_normalized = positions["username"], positions["username_normalized"]
    at_email, at_email_normalized = positions["email"], positions["email_normalized"]
    at_password_hash = positions["password_hash"]
    at_created, at_updated = positions["created_at"], positions["updated_at"]
    for record in records:
        email, username = _keys(record)
        # Duplicates inside the batch: the later copy is rejected.
        clash = (
            "user_id"
            if record.user_id is not None and record.user_id in seen_ids
            else "email"
            if email is not None and email in seen_emails
            else "username"
            if username is not None and username in seen_usernames
            else None
        )
        if clash:
            prepared.rejected.append(_reject(record, DUPLICATE_IN_FILE, clash))
            continue
        if record.user_id is not None:
            seen_ids.add(record.user_id)
        if email is not None:
            seen_emails.add(email)
        if username is not None:
            seen_usernames.add(username)
        password_hash = record.password_hash
        if password_hash is not None and _weak(password_hash):
            prepared.weak_hashes += 1
            if reset_weak:
                password_hash = None  # the tenant wants these users to reset instead
        # The row goes straight into COPY's column order (no dict per user: this runs a
        # million times on the reading thread).
        values = template.copy()
        for key, value in record.profile.items():
            position = positions[key]
            if position in json_positions:
                value = value.json if type(value) is JsonObject else json.dumps(value)
            values[position] = value
        user_id = record.user_id or _new_id()
        values[at_tenant], values[at_id] = tenant_id, user_id
        values[at_username], values[at_username_normalized] = record.username, username
        values[at_email], values[at_email_normalized] = record.email, email
        values[at_password_hash] = password_hash
        values[at_created] = _created_at(record, marker)
        values[at_updated] = marker
        prepared.items.append((record, email, username, user_id, password_hash, values))
    return prepared


def apply(
    records: list[UserRecord],
    *,
    upsert: bool,
    marker: datetime | None = None,
    written: Written | None = None,
) -> tuple[Summary, list[Rejected]]:
    """Write one batch into the current tenant (flushed, not committed). `marker` is the
    import's write time (see the module docstring); rows carrying it were written by this
    import, so a record matching one is a duplicate inside the file. `written`, only for an
    import into a tenant that was empty when it started: the keys it wrote so far (only
    keys it may have seen are looked up; the unique id and username still guard against a
    user created meanwhile by another path)."""
    tenant_id = current_tenant_id()
    prepared = prepare(
        records,
        tenant_id=tenant_id,
        marker=marker or utcnow(),
        reset_weak=weak_reset(tenant_id),
    )
    return write(prepared, upsert=upsert, written=written)


def write(
    prepared: Prepared, *, upsert: bool, written: Written | None = None
) -> tuple[Summary, list[Rejected]]:
    """The database half of a batch (see `apply`)."""
    tenant_id, marker = prepared.tenant_id, prepared.marker
    summary = Summary(total=prepared.total, weak_hashes=prepared.weak_hashes)
    rejected = list(prepared.rejected)
    _lock_tenant(tenant_id)
    if written is not None and written.trusted and _import_jobs_active(tenant_id):
        # Another import writes into this tenant too (checked under the lock, before any
        # of its batches can land unseen): from now on every key is looked up.
        written.trusted = False
    ids, emails, usernames = prepared.ids, prepared.emails, prepared.usernames
    if written is not None:
        ids = {key for key in ids if written.maybe("id", key)}
        emails = {key for key in emails if written.maybe("email", key)}
        usernames = {key for key in usernames if written.maybe("username", key)}
    by_id, by_email, by_username = _existing(ids, emails, usernames, tenant_id)

    new: list[tuple[UserRecord, str, list[Any]]] = []
    updates: list[tuple[UserRecord, str, dict[str, Any]]] = []
    for record, email, username, user_id, password_hash, values in prepared.items:
        # Existing users this record matches: id → (updated_at, the key that matched).
        matches: dict[str, tuple[datetime, str]] = {}
        if record.user_id is not None and record.user_id in by_id:
            matches[record.user_id] = (by_id[record.user_id], "user_id")
        for found_id, found_at in by_email.get(email, ()) if email else ():
            matches.setdefault(found_id, (found_at, "email"))
        if username is not None and username in by_username:
            found_id, found_at = by_username[username]
            matches.setdefault(found_id, (found_at, "username"))
        if not matches:
            new.append((record, user_id, values))
            continue
        ours = [path for found_at, path in matches.values() if found_at == marker]
        path = next(iter(matches.values()))[1]
        if ours:
            rejected.append(_reject(record, DUPLICATE_IN_FILE, ours[0]))
        elif not upsert:
            rejected.append(_reject(record, EXISTS, path))
        elif len(matches) > 1 or (record.user_id is not None and record.user_id not in matches):
            rejected.append(_reject(record, AMBIGUOUS, "email" if email else path))
        else:
            fields = dict(record.profile)
            if password_hash is not None:
                fields["password_hash"] = password_hash
            updates.append((record, next(iter(matches)), fields))

    inserted = _insert_users(new, rejected)
    if written is not None:
        for record, user_id in inserted:
            written.add("id", user_id)
            email, username = _keys(record)
            if email is not None:
                written.add("email", email)
            if username is not None:
                written.add("username", username)
    for _record, user_id, fields in updates:
        _update_user(user_id, fields, marker, tenant_id)
        summary.updated += 1
    touched = inserted + [(record, user_id) for record, user_id, _ in updates]
    _write_totp(touched, tenant_id, replace={user_id for _, user_id, _ in updates})
    _write_identities(touched, tenant_id)
    _write_extras(inserted)
    summary.inserted = len(inserted)
    summary.failed = len(rejected)
    rejected.sort(key=lambda item: item.index)
    return summary, rejected


def _weak(password_hash: str) -> bool:
    # bcrypt and argon2 are never weak: skip parsing the string again for the usual case.
    return not password_hash.startswith(("$2a$", "$2b$", "$2y$", "$argon2")) and (
        foreign_hashes.is_weak(password_hash)
    )


def _new_id() -> str:
    return uuid.uuid4().hex  # what users.service.create_user gives a user without an id


def _existing(
    ids: set[str], emails: set[str], usernames: set[str], tenant_id: str
) -> tuple[
    dict[str, datetime], dict[str, list[tuple[str, datetime]]], dict[str, tuple[str, datetime]]
]:
    """The tenant's users matching any key of the batch, in one query: by id, by
    normalized email (several users may share one), by normalized username."""
    by_id: dict[str, datetime] = {}
    by_email: dict[str, list[tuple[str, datetime]]] = {}
    by_username: dict[str, tuple[str, datetime]] = {}
    conditions = []
    # One array parameter per key on PostgreSQL (`= ANY(...)`): thousands of IN
    # parameters cost more to render and parse than the look-up itself.
    postgres = db.session.get_bind().dialect.name == "postgresql"
    for column, values in (
        (_USERS.c.id, ids),
        (_USERS.c.email_normalized, emails),
        (_USERS.c.username_normalized, usernames),
    ):
        if values and postgres:
            conditions.append(column == any_(literal(list(values), ARRAY(String))))
        elif values:
            conditions.append(column.in_(values))
    if not conditions:
        return by_id, by_email, by_username
    rows = db.session.execute(
        select(
            _USERS.c.id,
            _USERS.c.email_normalized,
            _USERS.c.username_normalized,
            _USERS.c.updated_at,
        ).where(_USERS.c.tenant_id == tenant_id, or_(*conditions))
    )
    for user_id, email, username, updated_at in rows:
        if user_id in ids:
            by_id[user_id] = updated_at
        if email is not None and email in emails:
            by_email.setdefault(email, []).append((user_id, updated_at))
        if username is not None and username in usernames:
            by_username[username] = (user_id, updated_at)
    return by_id, by_email, by_username


def _insert_users(
    new: list[tuple[UserRecord, str, list[Any]]], rejected: list[Rejected]
) -> list[tuple[UserRecord, str]]:
    """Insert the batch's new users at once (COPY on PostgreSQL); should a user created
    meanwhile by another path take an id or username (a unique violation), insert them
    one by one and reject only those that clash. (record, user id) of those inserted."""
    if not new:
        return []
    try:
        with db.session.begin_nested():
            if db.session.get_bind().dialect.name == "postgresql":
                _copy_rows([values for _, _, values in new])
            else:
                db.session.execute(_USERS.insert(), [_row_of(values) for _, _, values in new])
        return [(record, user_id) for record, user_id, _ in new]
    except (IntegrityError, psycopg.IntegrityError):  # COPY runs on the driver's connection
        pass
    inserted = []
    for record, user_id, values in new:
        try:
            with db.session.begin_nested():
                db.session.execute(_USERS.insert(), [_row_of(values)])
            inserted.append((record, user_id))
        except IntegrityError:
            rejected.append(_reject(record, EXISTS, "user_id" if record.user_id else "username"))
    return inserted


_COLUMNS = tuple(column.name for column in _USERS.columns)
_JSON_POSITIONS = tuple(
    position for position, column in enumerate(_USERS.columns) if isinstance(column.type, JSON)
)
_POSITIONS = {name: position for position, name in enumerate(_COLUMNS)}
_JSON_POSITION_SET = frozenset(_JSON_POSITIONS)
# A new user's row in COPY's column order, before its own values go in.
_TEMPLATE = [
    json.dumps(_NEW_ROW[name]) if position in _JSON_POSITION_SET else _NEW_ROW.get(name)
    for position, name in enumerate(_COLUMNS)
]
_COPY = "COPY user_account ({}) FROM STDIN".format(", ".join(f'"{name}"' for name in _COLUMNS))


def _row_of(values: list[Any]) -> dict[str, Any]:
    """COPY's values as an insert statement takes them (JSON back to objects)."""
    row = dict(zip(_COLUMNS, values, strict=True))
    for position in _JSON_POSITIONS:
        row[_COLUMNS[position]] = json.loads(values[position])
    return row


def _copy_rows(rows: list[list[Any]]) -> None:
    """PostgreSQL's COPY for the batch's new users: the same rows an executemany insert
    would write, at a fraction of the cost (no statement per row). It runs on the
    session's own connection, inside its transaction (and savepoint)."""
    connection = db.session.connection().connection.driver_connection
    with connection.cursor() as cursor, cursor.copy(_COPY) as copy:
        for values in rows:
            copy.write_row(values)


def _update_user(user_id: str, fields: dict[str, Any], marker: datetime, tenant_id: str) -> None:
    values: dict[str, Any] = dict(fields, updated_at=marker, version=_USERS.c.version + 1)
    if "password_hash" in fields:
        values["password_tag"] = None
        # A new password: the sessions made with the old one end, as on a password change.
        values["session_generation"] = _USERS.c.session_generation + 1
    db.session.execute(
        update(_USERS)
        .where(_USERS.c.tenant_id == tenant_id, _USERS.c.id == user_id)
        .values(**values)
    )


def _write_totp(written: list[tuple[UserRecord, str]], tenant_id: str, replace: set[str]) -> None:
    rows = [
        mfa.imported_totp_row(tenant_id=tenant_id, user_id=user_id, secret=record.totp_secret)
        for record, user_id in written
        if record.totp_secret is not None
    ]
    if not rows:
        return
    table = MfaEnrolment.__table__
    replaced = [row["user_id"] for row in rows if row["user_id"] in replace]
    if replaced:
        db.session.execute(
            table.delete().where(
                table.c.tenant_id == tenant_id,
                table.c.user_id.in_(replaced),
                table.c.type == mfa.TOTP,
            )
        )
    db.session.execute(table.insert(), rows)


def _write_identities(written: list[tuple[UserRecord, str]], tenant_id: str) -> None:
    """Linked identities; one already linked (to this user or another) is left as it is."""
    now = utcnow()
    rows = [
        {
            "tenant_id": tenant_id,
            "user_id": user_id,
            "provider": identity["provider"],
            "provider_user_id": identity["user_id"],
            "connection": identity.get("connection") or identity["provider"],
            "is_social": bool(identity.get("isSocial", True)),
            "profile_data": identity.get("profileData") or {},
            "created_at": now,
        }
        for record, user_id in written
        for identity in record.identities
    ]
    if not rows:
        return
    table = Identity.__table__
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        statement = insert(table).on_conflict_do_nothing(
            index_elements=["tenant_id", "connection", "provider_user_id"]
        )
        db.session.execute(statement, rows)
    else:
        for row in rows:
            exists = db.session.scalar(
                select(func.count())
                .select_from(table)
                .where(
                    table.c.tenant_id == tenant_id,
                    table.c.connection == row["connection"],
                    table.c.provider_user_id == row["provider_user_id"],
                )
            )
            if not exists:
                db.session.execute(table.insert(), [row])


def _write_extras(inserted: Iterable[tuple[UserRecord, str]]) -> None:
    """A Gatehouse file's policies, properties, secrets and device keys of new users,
    through their services (secrets are encrypted there); rare enough that per-row writes
    are fine."""
    from app.properties import service as property_service
    from app.secrets import service as secret_service

    for record, user_id in inserted:
        for policy in record.policies or ():
            db.session.add(
                Policy(
                    tenant_id=current_tenant_id(),
                    user_id=user_id,
                    resource=policy["resource"],
                    resource_type=policy["resource_type"],
                    type=policy["type"],
                )
            )
        for name, value in (record.properties or {}).items():
            property_service.create_property(user_id=user_id, name=name, value=value)
        for name, value in (record.secrets or {}).items():
            secret_service.create_secret(user_id=user_id, name=name, value=value)
        for device in record.extra.get("device_credentials", ()):
            db.session.add(
                user_lines.new_device_credential(
                    tenant_id=current_tenant_id(), user_id=user_id, device=device
                )
            )
    db.session.flush()


class _Batches:
    """Group a source's items into batches of records, rejections passed on as they come."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.records: list[UserRecord] = []
        self.rejected: list[Rejected] = []
        self.count = 0

    def add(self, item: UserRecord | Rejected) -> bool:
        """Take one item; True when a batch is full."""
        self.count += 1
        if isinstance(item, Rejected):
            self.rejected.append(item)
        else:
            self.records.append(item)
        return self.count >= self.batch_size

    def take(self) -> tuple[list[UserRecord], list[Rejected], int]:
        taken = (self.records, self.rejected, self.count)
        self.records, self.rejected, self.count = [], [], 0
        return taken


def _with_source(
    written: tuple[Summary, list[Rejected]], source_rejected: list[Rejected], count: int
) -> tuple[Summary, list[Rejected]]:
    """A batch's outcome counting the records its source already rejected."""
    summary, rejected = written
    summary.total = count
    summary.failed += len(source_rejected)
    return summary, sorted(source_rejected + rejected, key=lambda item: item.index)


def _apply_batch(
    records: list[UserRecord], source_rejected: list[Rejected], count: int, **options: Any
) -> tuple[Summary, list[Rejected]]:
    outcome = apply(records, **options) if records else (Summary(), [])
    return _with_source(outcome, source_rejected, count)


@_one_cli_import_at_a_time
def import_stream(
    stream: BinaryIO,
    *,
    format: str,
    hash_config: foreign_hashes.FirebaseHashConfig | None = None,
    passphrase: str | None = None,
    upsert: bool = False,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[Summary], None] | None = None,
    on_rejected: Callable[[Rejected], None] | None = None,
) -> Summary:
    """Import a whole file into the current tenant, in process: the CLI's path. It commits
    after every batch (it is called from an edge, `flask users import`, whose job that
    is), so a stopped import keeps what it wrote and a rerun with upsert finishes it. A
    FileError is raised after the users before it were written.

    The file is read and checked, and each batch's rows built (`prepare`), in this thread
    while the previous batch is written by a writer thread (in a copy of this context:
    same tenant scope, same session, which this thread leaves alone meanwhile), so the
    Python work overlaps the database's."""
    marker = utcnow()
    tenant_id = current_tenant_id()
    reset_weak = weak_reset(tenant_id)
    summary = Summary()
    statistics = _Statistics()
    batches = _Batches(batch_size)
    written = None if tenant_has_users(tenant_id) else Written()
    Batch = tuple[Prepared, list[Rejected], int]
    pending: queue.Queue[Batch | None] = queue.Queue(1)
    failures: list[BaseException] = []

    def write_batch(batch: Batch) -> None:
        prepared, source_rejected, count = batch
        outcome, rejected = _with_source(
            write(prepared, upsert=upsert, written=written), source_rejected, count
        )
        statistics.refresh(outcome.inserted)
        db.session.commit()
        summary.add(outcome)
        for item in rejected:
            if on_rejected is not None:
                on_rejected(item)
        if on_progress is not None:
            on_progress(summary)

    def writer() -> None:
        while (batch := pending.get()) is not None:
            if failures:
                continue  # drain what the reader still sends
            try:
                write_batch(batch)
            except BaseException as error:  # handed to the reader's thread, raised there
                db.session.rollback()
                failures.append(error)

    def send(taken: tuple[list[UserRecord], list[Rejected], int]) -> None:
        if failures:
            raise failures[0]
        records, source_rejected, count = taken
        prepared = prepare(records, tenant_id=tenant_id, marker=marker, reset_weak=reset_weak)
        pending.put((prepared, source_rejected, count))

    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(writer,), name="import-writer"
    )
    thread.start()
    file_error = None
    # Records are acyclic and freed by reference counting: the cycle collector, run every
    # 700 allocations by default, would walk every live batch again and again for nothing.
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    # The writer waits on the database a dozen times a batch, and each time it wakes it
    # waits for this thread to hand over the GIL: every 5 ms by default, which then adds
    # up to more than the writes themselves.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        items = sources.read(
            stream, format, hash_config=hash_config, passphrase=passphrase, any_string_hash=True
        )
        try:
            for item in items:
                if batches.add(item):
                    send(batches.take())
        except FileError as error:
            file_error = error
        if batches.count:
            send(batches.take())
    finally:
        pending.put(None)
        thread.join()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(switch_interval)
    if failures:
        raise failures[0]
    if file_error is not None:
        raise file_error
    return summary


class _Statistics:
    """ANALYZE the user table as an import doubles what it wrote: until PostgreSQL's
    statistics see the new rows, it plans the batch look-up as a scan of the tenant's
    (few, it thinks) users, which grows with every batch."""

    def __init__(self) -> None:
        self.inserted = 0
        self.next = 50_000

    def refresh(self, inserted: int) -> None:
        self.inserted += inserted
        if self.inserted < self.next or db.session.get_bind().dialect.name != "postgresql":
            return
        self.next = self.inserted * 2
        db.session.execute(text("ANALYZE user_account"))


def start_import(
    stream: BinaryIO,
    *,
    upsert: bool,
    connection_id: str,
    external_id: str | None,
    send_completion_email: bool,
    max_bytes: int | None,
) -> TransferJob:
    """Store an Auth0 import file as a pending job of the current tenant and queue it
    (after the commit); PayloadTooLarge `file_too_large` past `max_bytes`."""
    from app.portability import tasks  # the task module imports this one

    job = jobs.new_job(
        type=IMPORT,
        format="auth0",
        upsert=upsert,
        connection_id=connection_id,
        external_id=external_id,
        send_completion_email=send_completion_email,
    )
    try:
        job.file_bytes = jobs.write_file(job, INPUT, jobs.copy_stream(stream, max_bytes))
    except ValueError:
        raise PayloadTooLarge(
            f"The file is larger than {max_bytes} bytes", code="file_too_large"
        ) from None
    jobs.touch(job)
    db.session.flush()
    enqueue_after_commit(tasks.run_import_job, job.tenant_id, job.id)
    return job


def run_import(job_id: str) -> None:
    """The worker's body for one import job (in its tenant's scope). Resumable: it skips
    the `records_done` records already written, and commits each batch together with the
    job's counters. A second worker on the same job stops at its first batch (the resume
    point moved under it)."""
    job = jobs.lock_job(job_id)
    if job is None or job.type != IMPORT or job.status in (COMPLETED, FAILED):
        return
    job.status = PROCESSING
    jobs.touch(job)
    marker = job.created_at  # the same marker across resumes (see the module docstring)
    skip = done = job.records_done
    upsert, file_format = job.upsert, job.format
    # No Bloom filter here: jobs of one tenant may run side by side (an SDK uploading a
    # file in parts), and each must see the others' users; look every key up.
    written = None
    db.session.commit()

    batches = _Batches(BATCH_SIZE)
    statistics = _Statistics()

    def flush() -> bool:
        nonlocal done
        records, source_rejected, count = batches.take()
        job = jobs.lock_job(job_id)
        if job is None or job.records_done != done or job.status != PROCESSING:
            db.session.rollback()
            return False  # deleted, or another worker took the job over
        batch, rejected = _apply_batch(
            records, source_rejected, count, upsert=upsert, marker=marker, written=written
        )
        statistics.refresh(batch.inserted)
        for item in rejected:
            jobs.add_error(job, item.index, item.shown, item.errors)
        job.inserted += batch.inserted
        job.updated += batch.updated
        job.failed += batch.failed
        job.total += batch.total
        job.weak_hashes += batch.weak_hashes
        job.records_done += count
        done += count
        jobs.touch(job)
        db.session.commit()
        return True

    reader = jobs.ChunkReader(jobs.get_job(job_id), INPUT)
    index = 0
    try:
        for item in sources.read(reader, file_format):
            index += 1
            if index <= skip:
                continue
            if batches.add(item) and not flush():
                return
    except FileError as error:
        if batches.count and not flush():
            return
        _finish(job_id, FAILED, details=error.message)
        return
    if batches.count and not flush():
        return
    _finish(job_id, COMPLETED)


def _finish(job_id: str, status: str, details: str | None = None) -> None:
    job = jobs.lock_job(job_id)
    if job is None or job.status != PROCESSING:
        db.session.rollback()
        return
    job.status = status
    job.status_details = details
    job.finished_at = utcnow()
    jobs.touch(job)
    jobs.drop_file(job, INPUT)
    audit_service.record(
        action="users.imported",
        actor="job",
        target=job.id,
        data={
            "status": status,
            "inserted": job.inserted,
            "updated": job.updated,
            "failed": job.failed,
            "total": job.total,
            "weak_hashes": job.weak_hashes,
        },
    )
    db.session.commit()


def stale_imports(now: datetime) -> Select[tuple[str, str]]:
    """Select (tenant id, job id) of import jobs still pending or processing whose worker
    has not shown a sign of life for IMPORT_STALE_SECONDS (killed, or its message was
    lost): what the `requeue-stuck` job sends again (portability.tasks.STALE_IMPORTS)."""
    # A batch of BATCH_SIZE users takes about a quarter of a second, so a live worker
    # touches its job far more often than this (300 s by default).
    cutoff = now - timedelta(seconds=current_app.config["IMPORT_STALE_SECONDS"])
    table = TransferJob.__table__
    return (
        select(table.c.tenant_id, table.c.id)
        .where(
            table.c.type == IMPORT,
            table.c.status.in_((PENDING, PROCESSING)),
            func.coalesce(table.c.heartbeat_at, table.c.created_at) < cutoff,
        )
        .order_by(table.c.created_at)
    )
