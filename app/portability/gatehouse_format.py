"""The Gatehouse users file, both ways: a full-fidelity export that `flask users import
--format gatehouse` reads back on another instance (nobody is locked in, us included).

NDJSON: a header line `{"format": "gatehouse-users", "version": 1, "exported_at",
"source_tenant", "includes": {password_hashes, mfa_secrets, secrets}, "trailer": true}`,
one user per line, then `{"format": "gatehouse-users-end", "count": N}` (a plain file cut
at a line boundary is then caught too). The reader takes it plain or gzip'd (by its
magic), and sealed with a passphrase (app/core/sealed.py) — which the writer requires
whenever TOTP or user secrets are included. The user lines are built by
app/portability/user_lines.py.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any, BinaryIO

from app.audit import service as audit_service
from app.core import sealed, security
from app.core.errors import Invalid
from app.core.tenancy import current_tenant_id
from app.credentials import foreign_hashes
from app.portability import sources, user_lines
from app.portability.records import FileError, Rejected, UserRecord, shown
from app.users import policies as policy_service

FORMAT, END_FORMAT, VERSION = "gatehouse-users", "gatehouse-users-end", 1
GZIP_MAGIC = b"\x1f\x8b"
READ_BYTES = 64 * 1024

BOOL_FIELDS = ("email_verified", "blocked", "require_twofactor_auth")
# Text columns of a user and their lengths (app/users/models.py).
TEXT_FIELDS = (
    ("display_name", 255),
    ("first_name", 255),
    ("last_name", 255),
    ("nickname", 255),
    ("photo_url", 2048),
    ("phone_number", 32),
    ("permissions_group", 128),
    ("device_token", 255),
    ("device_type", 32),
)


class ExportRefused(ValueError):
    """The export was asked to write secrets without a passphrase to encrypt them."""


def write(
    out: BinaryIO,
    *,
    include_password_hashes: bool,
    include_mfa_secrets: bool,
    include_secrets: bool = False,
    passphrase: str | None = None,
    compress: bool = False,
    page_size: int = user_lines.PAGE_SIZE,
) -> int:
    """Write the current tenant's users to `out` (sealed with `passphrase` when given,
    gzip'd when `compress`), page by page; how many users. ExportRefused when TOTP or
    user secrets are asked for without a passphrase."""
    if (include_mfa_secrets or include_secrets) and not passphrase:
        raise ExportRefused("TOTP and user secrets are exported only encrypted: give a passphrase")
    sink: Any = sealed.SealedWriter(out, passphrase) if passphrase else out
    target: Any = gzip.GzipFile(fileobj=sink, mode="wb", mtime=0) if compress else sink
    header = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
        "source_tenant": current_tenant_id(),
        "includes": {
            "password_hashes": include_password_hashes,
            "mfa_secrets": include_mfa_secrets,
            "secrets": include_secrets,
        },
        "trailer": True,
    }
    target.write(_line(header))
    count = 0
    for line in user_lines.lines(
        password_hashes=include_password_hashes,
        mfa_secrets=include_mfa_secrets,
        secrets=include_secrets,
        page_size=page_size,
    ):
        target.write(_line(line))
        count += 1
    target.write(_line({"format": END_FORMAT, "count": count}))
    # Who took the tenant's users out, and with what, is on record (never the passphrase).
    audit_service.record(
        action="users.exported",
        actor="operator",
        data={
            "format": "gatehouse",
            "count": count,
            "with_password_hashes": include_password_hashes,
            "with_mfa_secrets": include_mfa_secrets,
            "with_user_secrets": include_secrets,
            "encrypted": bool(passphrase),
        },
    )
    if compress:
        target.close()  # writes gzip's trailer; leaves the sink open
    if passphrase:
        sink.close()  # seals the final chunk; leaves `out` open
    out.flush()
    return count


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class _Prefixed:
    """A reader that hands out `prefix` before the rest of `stream` (what was peeked)."""

    def __init__(self, prefix: bytes, stream: IO[bytes] | Any) -> None:
        self._prefix, self._stream = prefix, stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._prefix:
            return self._stream.read(size)
        if size < 0:
            out, self._prefix = self._prefix + self._stream.read(), b""
            return out
        out, self._prefix = self._prefix[:size], self._prefix[size:]
        if len(out) < size:
            out += self._stream.read(size - len(out))
        return out


def _open(stream: BinaryIO, passphrase: str | None) -> Any:
    """The plain NDJSON bytes of `stream`, unsealed and gunzipped as its magic says."""
    start = stream.read(len(sealed.MAGIC))
    reader: Any = _Prefixed(start, stream)
    if sealed.is_sealed(start):
        if not passphrase:
            raise FileError("The file is encrypted: give its passphrase", 0)
        try:
            reader = sealed.SealedReader(reader, passphrase)
            start = reader.read(len(GZIP_MAGIC))
        except sealed.SealedError as error:
            raise FileError(f"Cannot decrypt the file: {error.message}", error.offset) from None
        reader = _Prefixed(start, reader)
    if start.startswith(GZIP_MAGIC):
        reader = gzip.GzipFile(fileobj=reader, mode="rb")
    return reader


def _lines(reader: Any) -> Iterator[tuple[int, bytes, bool]]:
    """(offset, line, ended with a newline) for each line of the plain stream; file-level
    problems (decryption, gzip) become FileError."""
    buffer, offset = b"", 0
    while True:
        try:
            piece = reader.read(READ_BYTES)
        except sealed.SealedError as error:
            raise FileError(f"Cannot decrypt the file: {error.message}", error.offset) from None
        except (EOFError, OSError, zlib.error):
            raise FileError("The gzip stream is damaged or truncated", offset) from None
        if not piece:
            break
        buffer += piece
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield offset, line, True
            offset += len(line) + 1
    if buffer:
        yield offset, buffer, False


def read(stream: BinaryIO, *, passphrase: str | None = None) -> Iterator[UserRecord | Rejected]:
    """The users of a Gatehouse file, in order: a UserRecord per good line, a Rejected
    (Auth0's `errors[{code, message, path}]`) per bad one. FileError when the file as a
    whole cannot be read: encrypted without (or with a wrong) passphrase, altered, not a
    Gatehouse file, or truncated (a cut line, or the end line missing)."""
    lines = _lines(_open(stream, passphrase))
    header = _header(lines)
    index, ended = 0, False
    for offset, raw, newline in lines:
        if ended:
            if raw.strip():
                raise FileError("Data follows the file's end line", offset)
            continue
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            if not newline:
                raise FileError("The file is truncated (its last line is cut)", offset) from None
            yield Rejected(index, {}, [_error("INVALID_FORMAT", "The line is not JSON", "")])
            index += 1
            continue
        if isinstance(value, dict) and value.get("format") == END_FORMAT:
            if value.get("count") != index:
                raise FileError(
                    f"The end line counts {value.get('count')} users, not {index}", offset
                )
            ended = True
            continue
        yield _record(index, value)
        index += 1
    if header.get("trailer") and not ended:
        raise FileError("The file is truncated (its end line is missing)", 0)


def _header(lines: Iterator[tuple[int, bytes, bool]]) -> dict[str, Any]:
    for _offset, raw, _newline in lines:
        try:
            header = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise FileError("Not a Gatehouse users file (its first line is no header)", 0)
        if header.get("version") != VERSION:
            raise FileError(f"Unknown Gatehouse file version {header.get('version')!r}", 0)
        return header
    raise FileError("The file is empty", 0)


def _error(code: str, message: str, path: str) -> dict[str, str]:
    return {"code": code, "message": message, "path": path}


def _datetime(errors: Any, value: Any, path: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        errors.add("INVALID_FORMAT", "Expected an ISO 8601 time with its offset", path)
        return None
    return parsed


def _list_of(errors: Any, value: Any, path: str, kind: type, what: str) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, kind) for item in value):
        errors.add("INVALID_TYPE", f"Expected an array of {what}", path)
        return None
    return value


def _identities(errors: Any, value: Any) -> list[dict[str, Any]]:
    identities = _list_of(errors, value, "identities", dict, "objects") or []
    for position, identity in enumerate(identities):
        path = f"identities.{position}"
        # The Identity columns' lengths: a longer value would fail its whole batch.
        for key, limit in (("provider", 128), ("user_id", 255), ("connection", 128)):
            if not isinstance(identity.get(key), str) or not identity[key]:
                errors.add("INVALID_TYPE", "Expected a non-empty string", f"{path}.{key}")
            else:
                sources._text(errors, identity[key], f"{path}.{key}", limit)
        if not isinstance(identity.get("isSocial", False), bool):
            errors.add("INVALID_TYPE", "Expected a boolean", f"{path}.isSocial")
        if not isinstance(identity.get("profileData") or {}, dict):
            errors.add("INVALID_TYPE", "Expected an object", f"{path}.profileData")
    return identities


def _devices(errors: Any, value: Any) -> list[dict[str, Any]]:
    devices = _list_of(errors, value, "device_credentials", dict, "objects") or []
    checked = []
    for position, device in enumerate(devices):
        path = f"device_credentials.{position}"
        row: dict[str, Any] = {}
        for key, limit in (("device_name", 255), ("device_id", 255), ("value", 16 * 1024)):
            row[key] = sources._text(errors, device.get(key), f"{path}.{key}", limit)
            if row[key] is None:
                errors.add("OBJECT_MISSING_REQUIRED_PROPERTY", "Missing or empty", f"{path}.{key}")
        row["type"] = device.get("type", "public_key")
        if row["type"] != "public_key":
            errors.add("INVALID_FORMAT", "Only public_key credentials", f"{path}.type")
        row["client_id"] = sources._text(errors, device.get("client_id"), f"{path}.client_id", 128)
        row["created_at"] = _datetime(errors, device.get("created_at"), f"{path}.created_at")
        checked.append(row)
    return checked


def _record(index: int, user: Any) -> UserRecord | Rejected:
    """One user line: checked as strictly as any import (ids, email, username, lengths,
    metadata size, policies), so a hand-edited file cannot write what the API refuses."""
    if not isinstance(user, dict):
        return Rejected(index, {}, [_error("OBJECT_REQUIRED", "A user line is an object", "")])
    errors = sources._Errors()
    get = user.get
    user_id = sources._user_id(errors, get("id"), "id")
    if get("id") is None:
        errors.add("OBJECT_MISSING_REQUIRED_PROPERTY", "Missing required property: id", "id")
    email = sources._email(errors, get("email"))
    username = sources._username(errors, get("username"))
    profile: dict[str, Any] = {}
    for key, limit in TEXT_FIELDS:
        text = sources._text(errors, get(key), key, limit)
        if text is not None:
            profile[key] = text
    for key in BOOL_FIELDS:
        flag = sources._bool(errors, get(key), key)
        if flag is not None:
            profile[key] = flag
    for key in ("user_metadata", "app_metadata"):
        metadata = sources._metadata(errors, get(key), key)
        if metadata is not None:
            profile[key] = metadata
    scopes = _list_of(errors, get("custom_scopes"), "custom_scopes", str, "strings")
    if scopes is not None:
        profile["custom_scopes"] = scopes
    settings = _list_of(errors, get("settings"), "settings", object, "values")
    if settings is not None:
        profile["settings"] = settings
    last_login = _datetime(errors, get("last_login_at"), "last_login_at")
    if last_login is not None:
        profile["last_login_at"] = last_login
    logins = get("logins_count")
    if logins is not None:
        if isinstance(logins, int) and not isinstance(logins, bool) and logins >= 0:
            profile["logins_count"] = logins
        else:
            errors.add("INVALID_TYPE", "Expected a count (an integer from 0)", "logins_count")
    created_at = get("created_at")
    _datetime(errors, created_at, "created_at")
    policies = _list_of(errors, get("policies"), "policies", dict, "objects")
    if policies:
        try:
            policy_service.check_policies(policies)
        except Invalid as error:
            errors.add("INVALID_FORMAT", error.message, "policies")
    identities = _identities(errors, get("identities"))
    devices = _devices(errors, get("device_credentials"))
    properties = get("properties")
    if properties is not None and not isinstance(properties, dict):
        errors.add("INVALID_TYPE", "Expected an object {name: value}", "properties")
    secrets = get("secrets")
    if secrets is not None and not (
        isinstance(secrets, dict) and all(isinstance(v, str) for v in secrets.values())
    ):
        errors.add("INVALID_TYPE", "Expected an object {name: string}", "secrets")
    password_hash = _password_hash(errors, get("password_hash"))
    totp_secret = None
    if get("totp_secret") is not None:
        totp_secret = sources._totp_secret(errors, get("totp_secret"), "totp_secret")
    if errors.items:
        return Rejected(index, shown(user), errors.items)
    return UserRecord(
        index=index,
        user_id=user_id,
        email=email,
        username=username,
        profile=profile,
        password_hash=password_hash,
        totp_secret=totp_secret,
        identities=identities,
        policies=policies,
        properties=properties,
        secrets=secrets,
        created_at=created_at,
        extra={"device_credentials": devices} if devices else {},
        shown=shown(user),
    )


def _password_hash(errors: Any, value: Any) -> str | None:
    """The stored string as exported: native argon2id, our own record of an imported
    foreign hash (`$gh-foreign$…`, which only a Gatehouse export carries), or any foreign
    format foreign_hashes takes."""
    if value is None:
        return None
    if isinstance(value, str) and value.startswith(("$argon2id$", security.FOREIGN_HASH_PREFIX)):
        try:
            security.check_foreign_hash(value)
            return value
        except security.ForeignHashError as error:
            code = "UNSUPPORTED_HASH" if error.unsupported else "INVALID_HASH"
            errors.add(code, f"The password hash is malformed: {error}", "password_hash")
            return None
    try:
        return foreign_hashes.from_string(value)
    except Invalid as error:
        errors.hash_error(error)
        return None
