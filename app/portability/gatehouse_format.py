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

import base64
import binascii
import gzip
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any, BinaryIO

from app.core import password_formats, sealed
from app.core.errors import Invalid
from app.core.tenancy import current_tenant_id
from app.credentials import foreign_hashes
from app.portability import user_lines
from app.portability.records import PROFILE_FIELDS, FileError, Rejected, UserRecord, shown

FORMAT, END_FORMAT, VERSION = "gatehouse-users", "gatehouse-users-end", 1
GZIP_MAGIC = b"\x1f\x8b"
READ_BYTES = 64 * 1024

BOOL_FIELDS = ("email_verified", "blocked", "require_twofactor_auth")
TEXT_FIELDS = (
    "display_name",
    "first_name",
    "last_name",
    "nickname",
    "photo_url",
    "phone_number",
    "permissions_group",
    "device_token",
    "device_type",
)
LIST_FIELDS = ("custom_scopes", "settings")
OBJECT_FIELDS = ("user_metadata", "app_metadata")


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
        except (ValueError, UnicodeDecodeError):
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
        except (ValueError, UnicodeDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise FileError("Not a Gatehouse users file (its first line is no header)", 0)
        if header.get("version") != VERSION:
            raise FileError(f"Unknown Gatehouse file version {header.get('version')!r}", 0)
        return header
    raise FileError("The file is empty", 0)


def _error(code: str, message: str, path: str) -> dict[str, str]:
    return {"code": code, "message": message, "path": path}


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    return "null" if value is None else names.get(type(value), "object")


def _typed(user: dict[str, Any], key: str, kind: type, expected: str) -> list[dict[str, str]]:
    value = user.get(key)
    # bool is an int to Python, never to JSON.
    if value is None or (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
        return []
    return [_error("INVALID_TYPE", f"Expected type {expected} but found {_type_name(value)}", key)]


def _record(index: int, user: Any) -> UserRecord | Rejected:
    if not isinstance(user, dict):
        return Rejected(index, {}, [_error("INVALID_TYPE", "A user line is a JSON object", "")])
    errors: list[dict[str, str]] = []
    if not isinstance(user.get("id"), str) or not user["id"]:
        errors.append(
            _error("OBJECT_MISSING_REQUIRED_PROPERTY", "Missing required property: id", "id")
        )
    for key in ("email", "username", *TEXT_FIELDS, "created_at"):
        errors += _typed(user, key, str, "string")
    for key in BOOL_FIELDS:
        errors += _typed(user, key, bool, "boolean")
    for key in (*LIST_FIELDS, "policies", "identities", "device_credentials"):
        errors += _typed(user, key, list, "array")
    for key in (*OBJECT_FIELDS, "properties", "secrets"):
        errors += _typed(user, key, dict, "object")
    password_hash = _password_hash(user.get("password_hash"), errors)
    totp_secret = _totp_secret(user.get("totp_secret"), errors)
    secrets = user.get("secrets")
    if isinstance(secrets, dict) and not all(isinstance(v, str) for v in secrets.values()):
        errors.append(_error("INVALID_TYPE", "Secret values are strings", "secrets"))
    if errors:
        return Rejected(index, shown(user), errors)
    profile = {key: user[key] for key in PROFILE_FIELDS if key in user}
    return UserRecord(
        index=index,
        user_id=user["id"],
        email=user.get("email"),
        username=user.get("username"),
        profile=profile,
        password_hash=password_hash,
        totp_secret=totp_secret,
        identities=list(user.get("identities") or []),
        policies=user.get("policies"),
        properties=user.get("properties"),
        secrets=secrets,
        created_at=user.get("created_at"),
        extra={key: user[key] for key in user_lines.EXTRA_FIELDS if key in user},
        shown=shown(user),
    )


def _password_hash(value: Any, errors: list[dict[str, str]]) -> str | None:
    """The stored string as exported: native argon2id, our own record of an imported
    foreign hash (`$gh-foreign$…`, only ever from a Gatehouse export), or a foreign format
    as foreign_hashes takes it."""
    if value is None:
        return None
    if isinstance(value, str) and value.startswith(("$argon2id$", password_formats.FOREIGN)):
        try:
            password_formats.check(value)
            return value
        except password_formats.FormatError as error:
            code = "UNSUPPORTED_HASH" if error.unsupported else "INVALID_HASH"
            errors.append(_error(code, str(error), "password_hash"))
            return None
    try:
        return foreign_hashes.from_string(value)
    except Invalid as error:
        for path, reason in (error.fields or {"password_hash": error.message}).items():
            errors.append(_error(error.code.upper(), str(reason), path))
        return None


def _totp_secret(value: Any, errors: list[dict[str, str]]) -> str | None:
    if value is None:
        return None
    try:
        if isinstance(value, str) and value and base64.b32decode(value + "=" * (-len(value) % 8)):
            return value
    except (binascii.Error, ValueError):
        pass
    errors.append(_error("INVALID_FORMAT", "A TOTP secret is base32", "totp_secret"))
    return None
