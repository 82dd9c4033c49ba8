"""Foreign password hashes at import (issue 24): turn what an Auth0 bulk-import file, a
Firebase `auth:export` (with its project's scrypt parameters), a Django or passlib
database or an LDAP directory holds into the one string the `password_hash` column keeps
(the formats are described in app/core/security.py, its imported-hashes section).

Malformed input is refused with `Invalid(code="invalid_hash")`, an algorithm or format we
do not take with `Invalid(code="unsupported_hash")`. Neither error quotes the hash: its
`fields` name the offending path of the user's JSON (Auth0's per-user `errors[].path`)
with fixed words. Verification, `needs_rehash` and `is_weak` work on the stored string;
a sign-in verifies through `security.verify_password`, which hands them to core.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.core import security
from app.core.errors import Invalid

# Auth0's custom_password_hash.algorithm values, by how we store them.
AUTH0_DIGESTS = ("md4", "md5", "sha1", "sha256", "sha512")
AUTH0_STRING_FORMATS = security.FOREIGN_STRING_FORMATS
# Beyond Auth0: `pbkdf2` also takes Django's `pbkdf2_sha256$…`/`pbkdf2_sha1$…` strings, so a
# Django database moves in through the same file format.
STRING_PREFIXES: dict[str, tuple[str, ...]] = {
    algorithm: (prefix,) for algorithm, prefix in AUTH0_STRING_FORMATS.items()
}
STRING_PREFIXES["pbkdf2"] += ("pbkdf2_sha256$", "pbkdf2_sha1$")
AUTH0_HMAC_DIGESTS = ("md4", "md5", "sha1", "sha224", "sha256", "sha384", "sha512")
VALUE_ENCODINGS = ("hex", "base64", "utf8")


def invalid(path: str, reason: str) -> Invalid:
    return Invalid("The password hash is malformed", code="invalid_hash", fields={path: reason})


def unsupported(path: str, reason: str) -> Invalid:
    return Invalid(
        "The password hash algorithm is not supported",
        code="unsupported_hash",
        fields={path: reason},
    )


def _domain_error(error: security.ForeignHashError, path: str) -> Invalid:
    # str(error) is one of core.security's fixed reasons, never a piece of the input.
    return (unsupported if error.unsupported else invalid)(path, str(error))


def from_string(value: Any, path: str = "password_hash") -> str:
    """A self-describing hash as it comes: bcrypt, PHC strings (pbkdf2 as passlib and Auth0
    write it too), Django `pbkdf2_sha256$…`, LDAP `{SSHA}…`; checked, returned unchanged."""
    if not isinstance(value, str) or not value:
        raise invalid(path, "must be a non-empty string")
    if value.startswith(security.FOREIGN_HASH_PREFIX):
        # Our own records come back only through a Gatehouse export, never from a source system.
        raise unsupported(path, "unknown hash format")
    try:
        security.check_foreign_hash(value)
    except security.ForeignHashError as error:
        raise _domain_error(error, path) from None
    return value


def from_auth0_user(user: Mapping[str, Any]) -> str | None:
    """The stored hash of one user of an Auth0 bulk-import file: `password_hash` (bcrypt
    `$2a$`/`$2b$`) or `custom_password_hash`, never both; None when it has neither."""
    plain, custom = user.get("password_hash"), user.get("custom_password_hash")
    if plain is not None and custom is not None:
        raise invalid("custom_password_hash", "password_hash and custom_password_hash exclude")
    if plain is not None:
        if not isinstance(plain, str) or not plain.startswith(("$2a$", "$2b$", "$2y$")):
            raise unsupported("password_hash", "must be a bcrypt hash")
        return from_string(plain)
    if custom is not None:
        return from_custom_password_hash(custom)
    return None


def _object(value: Any, path: str, required: bool = True) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise invalid(path, "must be an object")
    return value


def _decode(node: Mapping[str, Any], path: str, default: str | None) -> bytes:
    """`{value, encoding}` (hash, salt, hmac key) to bytes."""
    value, encoding = node.get("value"), node.get("encoding", default)
    if not isinstance(value, str) or not value:
        raise invalid(f"{path}.value", "must be a non-empty string")
    if encoding not in VALUE_ENCODINGS:
        raise invalid(f"{path}.encoding", "must be hex, base64 or utf8")
    try:
        if encoding == "hex":
            return bytes.fromhex(value)
        if encoding == "base64":
            return security.lenient_b64decode(value)
    except (ValueError, binascii.Error):
        raise invalid(f"{path}.value", f"not {encoding}") from None
    return value.encode("utf-8")


def _digest_encoding(value: Any, scheme: str) -> str:
    """The encoding of a digest given without one: hex when it is exactly the digest's hex
    form (a hex digest is twice its size long, its base64 4/3: never both), else base64."""
    size = security.digest_size(scheme.removeprefix("hmac-"))
    if isinstance(value, str) and len(value) == 2 * size:
        try:
            bytes.fromhex(value)
        except ValueError:
            return "base64"
        return "hex"
    return "base64"


def from_custom_password_hash(custom: Any) -> str:
    """Auth0's `custom_password_hash` object: `algorithm`; `hash{value, encoding}` (plus
    `digest` and `key{value, encoding}` for hmac); `salt{value, encoding, position}`;
    `password{encoding}`."""
    path = "custom_password_hash"
    custom = _object(custom, path)
    algorithm = custom.get("algorithm")
    hash_node = _object(custom.get("hash"), f"{path}.hash")
    salt_node = _object(custom.get("salt"), f"{path}.salt", required=False)
    password_node = _object(custom.get("password"), f"{path}.password", required=False)
    password_encoding = password_node.get("encoding", "utf8")
    if password_encoding not in security.PASSWORD_ENCODINGS:
        raise unsupported(f"{path}.password.encoding", "unknown password encoding")

    if isinstance(algorithm, str) and algorithm in AUTH0_STRING_FORMATS:
        # A self-describing string: its salt and parameters are inside, and it was made
        # from the UTF-8 password (our string cannot carry another encoding).
        if salt_node or password_encoding != "utf8":
            raise invalid(path, f"{algorithm} takes no salt nor password encoding")
        if hash_node.get("encoding", "utf8") != "utf8":
            raise invalid(f"{path}.hash.encoding", "must be utf8")
        value = hash_node.get("value")
        if not isinstance(value, str) or not value.startswith(STRING_PREFIXES[algorithm]):
            raise invalid(f"{path}.hash.value", f"not a {algorithm} hash")
        return from_string(value, f"{path}.hash.value")

    if algorithm == "hmac":
        scheme = hash_node.get("digest")
        if scheme not in AUTH0_HMAC_DIGESTS:
            raise unsupported(f"{path}.hash.digest", "unknown hmac digest")
        key = _decode(_object(hash_node.get("key"), f"{path}.hash.key"), f"{path}.hash.key", "utf8")
        keys: tuple[bytes, ...] = (key,)
        scheme = f"hmac-{scheme}"
    elif algorithm in AUTH0_DIGESTS:
        scheme, keys = algorithm, ()
    else:
        raise unsupported(f"{path}.algorithm", "unknown algorithm")

    encoding = hash_node.get("encoding") or _digest_encoding(hash_node.get("value"), scheme)
    if encoding not in ("hex", "base64"):
        raise invalid(f"{path}.hash.encoding", "must be hex or base64")
    expected = _decode({**hash_node, "encoding": encoding}, f"{path}.hash", None)
    params: dict[str, str | int] = {"e": password_encoding}
    salt = b""
    if salt_node:
        salt = _decode(salt_node, f"{path}.salt", "utf8")
        if salt_node.get("position") not in security.SALT_POSITIONS:
            raise invalid(f"{path}.salt.position", "must be prefix or suffix")
        params["p"] = salt_node["position"]
    try:
        return security.foreign_hash_record(scheme, params, salt, *keys, expected)
    except security.ForeignHashError as error:
        raise _domain_error(error, f"{path}.hash.value") from None


@dataclass(frozen=True)
class FirebaseHashConfig:
    """A Firebase project's password hash parameters (console: Authentication → Users →
    ⋮ → Password hash parameters), under the names Firebase prints them with."""

    signer_key: bytes
    salt_separator: bytes
    rounds: int
    mem_cost: int

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> FirebaseHashConfig:
        """From `{base64_signer_key, base64_salt_separator, rounds, mem_cost}`."""
        try:
            signer_key = security.lenient_b64decode(config["base64_signer_key"])
            separator = security.lenient_b64decode(config.get("base64_salt_separator", ""))
            rounds, mem_cost = config["rounds"], config["mem_cost"]
        except (KeyError, TypeError, AttributeError, security.ForeignHashError):
            raise invalid("hash_config", "needs base64_signer_key, rounds and mem_cost") from None
        if not signer_key or not all(
            isinstance(number, int) and not isinstance(number, bool)
            for number in (rounds, mem_cost)
        ):
            raise invalid("hash_config", "needs base64_signer_key, rounds and mem_cost")
        if rounds not in security.FIREBASE_ROUNDS or mem_cost not in security.FIREBASE_MEM_COSTS:
            raise invalid("hash_config", "rounds 1-8 and mem_cost 1-14")
        return cls(signer_key, separator, rounds, mem_cost)


def from_firebase(password_hash: Any, salt: Any, config: FirebaseHashConfig) -> str:
    """One user of a Firebase `auth:export` (`passwordHash`, `salt`, both base64)."""
    decoded = []
    for name, value in (("passwordHash", password_hash), ("salt", salt)):
        if not isinstance(value, str) or not value:
            raise invalid(name, "must be a non-empty base64 string")
        try:
            decoded.append(security.lenient_b64decode(value))
        except security.ForeignHashError:
            raise invalid(name, "not base64") from None
    hashed, salt_bytes = decoded
    params: dict[str, str | int] = {"r": config.rounds, "m": config.mem_cost}
    fields = (salt_bytes, config.salt_separator, config.signer_key, hashed)
    try:
        return security.foreign_hash_record("firebase-scrypt", params, *fields)
    except security.ForeignHashError as error:
        raise _domain_error(error, "passwordHash") from None


def verify(stored: str, password: str) -> bool:
    """Whether `password` matches a stored hash, native or foreign."""
    return security.verify_password(stored, password)


def needs_rehash(stored: str) -> bool:
    """True for every foreign format (and a native hash of other parameters)."""
    return security.password_needs_rehash(stored)


def is_weak(stored: str) -> bool:
    """Weak: md4, md5, sha1 (plain, keyed or LDAP) and any unsalted digest ({SHA}, {MD5})."""
    if not security.is_foreign_hash(stored):
        return False
    try:
        return security.foreign_hash_is_weak(stored)
    except security.ForeignHashError as error:
        raise _domain_error(error, "password_hash") from None
