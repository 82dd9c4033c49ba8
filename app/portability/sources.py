"""Import sources: read an Auth0 bulk-import file, a Firebase `auth:export` file or a
Gatehouse export as a stream of `UserRecord`s and `Rejected`s, one per user of the file.

The file is parsed with ijson (the yajl2_c backend) one user at a time, so a file of a
million users costs the memory of one user. A file that cannot be parsed as a whole (not
JSON, truncated, the wrong top-level shape) raises `FileError` with the byte offset the
parser had reached; a user that cannot be imported is a `Rejected` with Auth0's per-user
errors (`{code, message, path}`) and the rest of the file goes on.

Checks here are per record and cheap (types, lengths, forms); whatever needs the database
(a user that already exists, the same user twice in the file) is the importer's
(app.portability.imports). Error codes are Auth0's schema-validation codes where Auth0 has
one (INVALID_TYPE, INVALID_FORMAT, MAX_LENGTH, ANY_OF_MISSING, OBJECT_REQUIRED,
OBJECT_ADDITIONAL_PROPERTIES), plus INVALID_HASH / UNSUPPORTED_HASH for a password hash
and UNSUPPORTED_FACTOR for an MFA enrolment other than TOTP.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

import ijson

from app.core.errors import Invalid
from app.credentials import foreign_hashes
from app.portability.records import FileError, Rejected, UserRecord, shown
from app.users import service as user_service

FORMATS = ("auth0", "firebase", "gatehouse")
READ_BYTES = 1 << 16
BOM = b"\xef\xbb\xbf"
MAX_DEPTH = 64  # nesting levels of the whole file (the array and the user are two)
_STRINGS = re.compile(rb'"[^"]*"')
_OPENERS = frozenset(b"[{")
MAX_METADATA_BYTES = 64 * 1024  # per metadata object, serialized
MAX_TOTP_SECRET = 128

# A plain ASCII address that email-validator certainly accepts (it costs ~50 µs a call, a
# third of the whole per-user budget): anything else goes through users.service.
_SIMPLE_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63})\Z"
)
# Top-level domains email-validator refuses (special-use names): left to it.
_SPECIAL_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})
_BASE32 = re.compile(r"[A-Z2-7]+=*\Z")

AUTH0_KEYS = frozenset(
    {
        "email",
        "email_verified",
        "user_id",
        "username",
        "given_name",
        "family_name",
        "name",
        "nickname",
        "picture",
        "blocked",
        "app_metadata",
        "user_metadata",
        "password_hash",
        "custom_password_hash",
        "mfa_factors",
    }
)
# Auth0 key → (User column, max length).
AUTH0_TEXT = (
    ("name", "display_name", 255),
    ("given_name", "first_name", 255),
    ("family_name", "last_name", 255),
    ("nickname", "nickname", 255),
    ("picture", "photo_url", 2048),
)
# Firebase providerUserInfo entries that are the account itself, not a linked identity.
FIREBASE_OWN_PROVIDERS = frozenset({"password", "phone"})


class JsonObject(dict):  # type: ignore[type-arg]
    """A metadata object together with the JSON text its check already produced: the
    importer's COPY writes `json` instead of encoding the object a second time."""

    __slots__ = ("json",)

    def __init__(self, value: dict[str, Any], text: str) -> None:
        super().__init__(value)
        self.json = text


class _Errors:
    """The errors of one user, in Auth0's shape."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, code: str, message: str, path: str) -> None:
        self.items.append({"code": code, "message": message, "path": path})

    def hash_error(self, error: Invalid) -> None:
        code = "UNSUPPORTED_HASH" if error.code == "unsupported_hash" else "INVALID_HASH"
        for path, reason in (error.fields or {"password_hash": "invalid"}).items():
            self.add(code, f"{error.message}: {reason}", path)


def _clean(value: str) -> bool:
    """No NUL (PostgreSQL text refuses it) and no lone surrogate (not UTF-8)."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(errors: _Errors, value: Any, path: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add("INVALID_TYPE", f"Expected type string but found {_kind(value)}", path)
        return None
    if len(value) > limit:
        errors.add("MAX_LENGTH", f"String is too long ({len(value)} chars), maximum {limit}", path)
        return None
    if not _clean(value):
        errors.add("INVALID_FORMAT", "The string holds a NUL or an invalid character", path)
        return None
    return value


def _bool(errors: _Errors, value: Any, path: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    errors.add("INVALID_TYPE", f"Expected type boolean but found {_kind(value)}", path)
    return None


def _metadata(errors: _Errors, value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.add("INVALID_TYPE", f"Expected type object but found {_kind(value)}", path)
        return None
    # ASCII-escaped: its length bounds the stored size, and a NUL shows as \u0000 (a lone
    # surrogate cannot come in: the parser replaces it).
    serialized = json.dumps(value)
    if len(serialized) > MAX_METADATA_BYTES or "\\u0000" in serialized:
        errors.add(
            "INVALID_FORMAT",
            f"The object must serialize to at most {MAX_METADATA_BYTES} bytes of valid text",
            path,
        )
        return None
    return JsonObject(value, serialized)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _email(errors: _Errors, value: Any, path: str = "email") -> str | None:
    email = _text(errors, value, path, 255)
    if email is None:
        return None
    match = _SIMPLE_EMAIL.match(email)
    if match is not None and match.group(1).lower() not in _SPECIAL_TLDS:
        local = email.partition("@")[0]
        if len(local) <= 64:
            return email
    try:
        return user_service.normalize_email(email)
    except Invalid:
        errors.add("INVALID_FORMAT", "Object didn't pass validation for format email", path)
        return None


def _username(errors: _Errors, value: Any, path: str = "username") -> str | None:
    username = _text(errors, value, path, 128)
    if username is None:
        return None
    try:
        user_service.normalize_username(username)
    except Invalid as error:
        errors.add("INVALID_FORMAT", error.message, path)
        return None
    return username


def _user_id(errors: _Errors, value: Any, path: str) -> str | None:
    user_id = _text(errors, value, path, 128)
    if user_id is None:
        return None
    try:
        return user_service.check_user_id(user_id)
    except Invalid as error:
        errors.add("INVALID_FORMAT", error.message, path)
        return None


def _totp_secret(errors: _Errors, value: Any, path: str) -> str | None:
    if not isinstance(value, str) or not value:
        errors.add("INVALID_TYPE", "The TOTP secret must be a base32 string", path)
        return None
    secret = value.replace(" ", "").upper()
    if len(secret) > MAX_TOTP_SECRET or not _BASE32.match(secret):
        errors.add("INVALID_FORMAT", "The TOTP secret must be base32", path)
        return None
    secret = secret.rstrip("=")  # stored unpadded, as pyotp makes them
    try:
        base64.b32decode(secret + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError):
        errors.add("INVALID_FORMAT", "The TOTP secret must be base32", path)
        return None
    return secret


def _auth0_factors(errors: _Errors, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list):
        errors.add("INVALID_TYPE", f"Expected type array but found {_kind(value)}", "mfa_factors")
        return None
    secret = None
    for position, factor in enumerate(value):
        path = f"mfa_factors.{position}"
        if not isinstance(factor, dict) or len(factor) != 1:
            errors.add("OBJECT_REQUIRED", "A factor is an object with one key", path)
            continue
        kind, body = next(iter(factor.items()))
        if kind != "totp":
            errors.add("UNSUPPORTED_FACTOR", f"Only totp factors are imported ({kind})", path)
            continue
        if secret is not None:
            errors.add("INVALID_FORMAT", "A user has at most one totp factor", path)
            continue
        if not isinstance(body, dict):
            errors.add("OBJECT_REQUIRED", "Expected an object {secret}", f"{path}.totp")
            continue
        secret = _totp_secret(errors, body.get("secret"), f"{path}.totp.secret")
    return secret


def _auth0_hash(user: dict[str, Any], any_string: bool) -> str | None:
    plain = user.get("password_hash")
    if (
        any_string
        and isinstance(plain, str)
        and not plain.startswith("$2")
        and user.get("custom_password_hash") is None
    ):
        return foreign_hashes.from_string(plain)
    return foreign_hashes.from_auth0_user(user)


def auth0_record(index: int, user: Any, any_string_hash: bool = False) -> UserRecord | Rejected:
    """One user of an Auth0 bulk-import file (Auth0's schema: unknown keys are refused).
    `user_id` is kept as given (Auth0 itself would prefix `auth0|`; our management API's
    POST /users keeps ids as given too). With `any_string_hash` (the CLI), `password_hash`
    may also be any self-describing hash string (Django `pbkdf2_sha256$…`, a PHC string,
    LDAP `{SSHA}…`), not only Auth0's bcrypt."""
    if not isinstance(user, dict):
        return Rejected(index, {}, [_error("OBJECT_REQUIRED", "A user must be an object", "")])
    errors = _Errors()
    for key in user.keys() - AUTH0_KEYS:
        errors.add("OBJECT_ADDITIONAL_PROPERTIES", "Additional properties not allowed", key)
    get = user.get
    email = _email(errors, get("email"))
    username = _username(errors, get("username"))
    user_id = _user_id(errors, get("user_id"), "user_id")
    if get("email") is None and get("username") is None:
        errors.add(
            "ANY_OF_MISSING", "Data does not match any schemas from 'anyOf': email, username", ""
        )
    profile: dict[str, Any] = {}
    for key, column, limit in AUTH0_TEXT:
        value = _text(errors, get(key), key, limit)
        if value is not None:
            profile[column] = value
    for key, column in (("email_verified", "email_verified"), ("blocked", "blocked")):
        flag = _bool(errors, get(key), key)
        if flag is not None:
            profile[column] = flag
    for key in ("app_metadata", "user_metadata"):
        metadata = _metadata(errors, get(key), key)
        if metadata is not None:
            profile[key] = metadata
    password_hash = None
    try:
        password_hash = _auth0_hash(user, any_string_hash)
    except Invalid as error:
        errors.hash_error(error)
    totp_secret = _auth0_factors(errors, get("mfa_factors"))
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
        shown=shown(user),
    )


def _error(code: str, message: str, path: str) -> dict[str, str]:
    return {"code": code, "message": message, "path": path}


def _firebase_created_at(errors: _Errors, value: Any) -> str | None:
    if value is None:
        return None
    try:
        millis = int(value) if isinstance(value, str | int) and not isinstance(value, bool) else -1
        if millis < 0:
            raise ValueError
        return datetime.fromtimestamp(millis / 1000, UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        errors.add("INVALID_FORMAT", "createdAt must be milliseconds since the epoch", "createdAt")
        return None


def _firebase_identities(errors: _Errors, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add("INVALID_TYPE", "Expected type array", "providerUserInfo")
        return []
    identities = []
    for position, info in enumerate(value):
        path = f"providerUserInfo.{position}"
        if not isinstance(info, dict):
            errors.add("OBJECT_REQUIRED", "A provider entry must be an object", path)
            continue
        provider = _text(errors, info.get("providerId"), f"{path}.providerId", 128)
        if provider in FIREBASE_OWN_PROVIDERS:
            continue
        raw_id = _text(errors, info.get("rawId"), f"{path}.rawId", 255)
        if not provider or not raw_id:
            errors.add("INVALID_FORMAT", "providerId and rawId are required", path)
            continue
        profile_data = {}
        for key, name in (("email", "email"), ("displayName", "name"), ("photoUrl", "picture")):
            text = _text(errors, info.get(key), f"{path}.{key}", 2048)
            if text is not None:
                profile_data[name] = text
        identities.append(
            {
                "provider": provider,
                "user_id": raw_id,
                "connection": provider,
                "isSocial": True,
                "profileData": profile_data,
            }
        )
    return identities


def firebase_record(
    index: int, user: Any, hash_config: foreign_hashes.FirebaseHashConfig | None
) -> UserRecord | Rejected:
    """One user of `firebase auth:export --format=json`. `customAttributes` (the custom
    claims, a JSON string) becomes `app_metadata`: like Auth0's app_metadata it is what
    the application trusts and the user cannot change. Unknown keys are ignored (Firebase
    adds fields over time)."""
    if not isinstance(user, dict):
        return Rejected(index, {}, [_error("OBJECT_REQUIRED", "A user must be an object", "")])
    errors = _Errors()
    get = user.get
    user_id = _user_id(errors, get("localId"), "localId")
    if get("localId") is None:
        errors.add("OBJECT_MISSING_REQUIRED_PROPERTY", "Missing required property: localId", "")
    email = _email(errors, get("email"))
    profile: dict[str, Any] = {}
    for key, column, limit in (
        ("displayName", "display_name", 255),
        ("photoUrl", "photo_url", 2048),
        ("phoneNumber", "phone_number", 32),
    ):
        value = _text(errors, get(key), key, limit)
        if value is not None:
            profile[column] = value
    for key, column in (("emailVerified", "email_verified"), ("disabled", "blocked")):
        flag = _bool(errors, get(key), key)
        if flag is not None:
            profile[column] = flag
    claims = get("customAttributes")
    if claims is not None:
        parsed = None
        if isinstance(claims, str):
            try:
                parsed = json.loads(claims)
            except ValueError:
                parsed = None
        if not isinstance(parsed, dict):
            errors.add(
                "INVALID_FORMAT", "customAttributes must be a JSON object", "customAttributes"
            )
        else:
            metadata = _metadata(errors, parsed, "customAttributes")
            if metadata is not None:
                profile["app_metadata"] = metadata
    password_hash = None
    if get("passwordHash") is not None:
        if hash_config is None:
            errors.add(
                "UNSUPPORTED_HASH",
                "A Firebase password hash needs the project's hash parameters (--hash-config)",
                "passwordHash",
            )
        else:
            try:
                password_hash = foreign_hashes.from_firebase(
                    get("passwordHash"), get("salt"), hash_config
                )
            except Invalid as error:
                errors.hash_error(error)
    identities = _firebase_identities(errors, get("providerUserInfo"))
    created_at = _firebase_created_at(errors, get("createdAt"))
    if errors.items:
        return Rejected(index, shown(user), errors.items)
    return UserRecord(
        index=index,
        user_id=user_id,
        email=email,
        username=None,
        profile=profile,
        password_hash=password_hash,
        identities=identities,
        created_at=created_at,
        shown=shown(user),
    )


class CountingReader:
    """A binary stream that counts the bytes handed to the parser (the offset of a
    FileError) and lets the first bytes be looked at before parsing starts."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._head = b""
        self.offset = 0
        self.depth = DepthGuard()

    def peek(self) -> bytes:
        if not self._head:
            self._head = self._stream.read(READ_BYTES) or b""
        return self._head

    def skip(self, size: int) -> None:
        """Drop the first `size` bytes of what `peek` showed (they still count)."""
        self._head = self._head[size:]
        self.offset += size

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""  # ijson asks for 0 bytes to learn whether the stream is binary
        if self._head:
            out, self._head = self._head, b""
        else:
            out = self._stream.read(size if size and size > 0 else READ_BYTES) or b""
        self.depth.check(out, self.offset)
        self.offset += len(out)
        return out


class DepthGuard:
    """Refuse JSON nested deeper than MAX_DEPTH before the parser sees it: ijson's object
    builder spends memory growing with the square of the depth (a 2 MB file of nested
    arrays takes gigabytes), and json.dumps would recurse past Python's limit.

    Each chunk is reduced with C-speed byte operations (escaped backslashes and quotes
    dropped, then every byte but quotes and brackets), the strings' remains cut out, and
    only the brackets left are walked in Python: a few hundred per 64 KiB of users."""

    _DELETE = bytes(range(256)).translate(None, b'"[]{}')  # every byte to delete

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.carry = b""  # trailing backslashes: their escape goes on in the next chunk

    def check(self, chunk: bytes, offset: int) -> None:
        data = self.carry + chunk
        stripped = data.rstrip(b"\\")
        self.carry = data[len(stripped) :] if len(data) - len(stripped) else b""
        data = stripped.replace(b"\\\\", b"").replace(b'\\"', b"")
        data = data.translate(None, self._DELETE)
        if self.in_string:
            end = data.find(b'"')
            if end < 0:
                return
            data, self.in_string = data[end + 1 :], False
        if data.count(b'"') % 2:  # a string runs on into the next chunk
            data, self.in_string = data[: data.rfind(b'"')], True
        depth = self.depth
        for byte in _STRINGS.sub(b"", data):
            if byte in _OPENERS:
                depth += 1
                if depth > MAX_DEPTH:
                    raise FileError(
                        f"The file nests deeper than {MAX_DEPTH} levels (near byte {offset})",
                        offset,
                    )
            else:
                depth -= 1
        self.depth = depth


def _parse_error(error: Exception, offset: int) -> FileError:
    # Only the parser's first line: the next ones quote the input, which may hold hashes.
    reason = str(error).replace("\\n", "\n").split("\n", 1)[0].removeprefix("b'").strip()
    reason = reason[:120] or "parse error"
    return FileError(f"The file is not valid JSON at byte {offset}: {reason}", offset)


def _start(reader: CountingReader, opening: bytes, shape: str) -> None:
    head = reader.peek()
    if head.startswith(BOM):  # some Windows tools write one; the parser would refuse it
        reader.skip(len(BOM))
        head = reader.peek()
    stripped = head.lstrip(b" \t\r\n")
    if not stripped:
        if not head:
            raise FileError("The file is empty", 0)
        return  # only whitespace so far: the parser will tell
    if not stripped.startswith(opening):
        offset = len(head) - len(stripped)
        raise FileError(f"The file must hold {shape} at byte {offset}", offset)


def _items(reader: CountingReader, prefix: str) -> Iterator[Any]:
    try:
        yield from ijson.items(reader, prefix, use_float=True, buf_size=READ_BYTES)
    except ijson.JSONError as error:
        raise _parse_error(error, reader.offset) from None


def read(
    stream: BinaryIO,
    format: str,
    *,
    hash_config: foreign_hashes.FirebaseHashConfig | None = None,
    passphrase: str | None = None,
    any_string_hash: bool = False,
) -> Iterator[UserRecord | Rejected]:
    """Every user of the file in order, as a record to import or a rejection; FileError
    when the file as a whole cannot be read (the users before it were already yielded).
    `any_string_hash`: see `auth0_record` (the CLI sets it; the Auth0 API does not)."""
    if format == "gatehouse":
        from app.portability import gatehouse_format  # written beside this module (p-export)

        yield from gatehouse_format.read(stream, passphrase=passphrase)
        return
    reader = CountingReader(stream)
    convert: Callable[[int, Any], UserRecord | Rejected]
    if format == "auth0":
        _start(reader, b"[", "a JSON array of users")
        prefix = "item"
        convert = functools.partial(auth0_record, any_string_hash=any_string_hash)
    elif format == "firebase":
        _start(reader, b"{", 'a JSON object {"users": [...]}')
        prefix = "users.item"
        convert = functools.partial(firebase_record, hash_config=hash_config)
        has_users_key = b'"users"' in reader.peek()
    else:
        raise ValueError(f"unknown import format {format!r}")
    count = 0
    for index, user in enumerate(_items(reader, prefix)):
        count += 1
        yield convert(index, user)
    if format == "firebase" and count == 0 and not has_users_key:
        raise FileError('The file must hold a JSON object {"users": [...]}', 0)
