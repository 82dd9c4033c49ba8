"""Every security primitive of the service, in one module (house rule), by section:

- password hashing: argon2id for our own hashes, the sign-in's constant-time verification,
  rehash decisions and the keyed password tag;
- imported (foreign) password hashes: bcrypt, argon2i/d, pbkdf2 (passlib, PHC, Django),
  LDAP `{SSHA}`…, Auth0's plain and keyed digests and Firebase's scrypt, each checked and
  verified with its own algorithm in constant time (app/credentials/foreign_hashes.py
  builds the strings from import files and maps errors to the domain);
- MD4 in pure Python, for Auth0's md4 hashes only;
- digests, keyed digests and constant-time compares; random values;
- Standard Webhooks signatures;
- signed tokens (itsdangerous);
- encryption: the AES-256-GCM key ring of secrets at rest, and the passphrase cipher
  (scrypt + AES-256-GCM) that app/core/sealed.py frames into a sealed export stream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
import threading
from collections.abc import Callable
from typing import Any

import bcrypt
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

# --- password hashing (argon2id)

# OWASP's argon2id floor: m=19 MiB, t=2, p=1. The same hasher verifies imported argon2i/d
# hashes: verification reads the variant and the parameters from the hash itself.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
# Verifying against this when the user does not exist costs the same as a real check.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# argon2id is memory-hard: more hashes at once than the cores a process has only makes
# them evict each other from the caches (measured: 8 at once on 2 cores run ~20 % slower
# than 2). A process runs at most this many; waiting threads hold no GIL.
_hashing = threading.BoundedSemaphore(1)


def limit_hashing(concurrency: int) -> None:
    """How many argon2id hashes one process runs at once (PASSWORD_HASH_CONCURRENCY)."""
    global _hashing
    _hashing = threading.BoundedSemaphore(max(1, concurrency))


def hash_password(password: str) -> str:
    """The argon2id encoded hash of `password`."""
    with _hashing:
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check `password` against an encoded hash; with no hash, spend the same time and fail.

    An imported hash (bcrypt, pbkdf2, Django, LDAP, Auth0's digests, Firebase scrypt…) is
    checked with its own algorithm; a malformed one fails like a wrong password."""
    if password_hash is not None and is_foreign_hash(password_hash):
        with _hashing:
            try:
                verified = _foreign_format(password_hash)(password_hash, password)
                fast = foreign_hash_is_fast(password_hash)
            except ForeignHashError:
                verified, fast = False, True
            if fast:
                # A digest takes microseconds where argon2id takes tens of milliseconds: pad
                # with the dummy verification, so timing tells nobody which accounts still
                # hold an imported md5/sha/LDAP hash (or a broken one).
                try:
                    _hasher.verify(_DUMMY_HASH, password)
                except (VerifyMismatchError, VerificationError, InvalidHashError):
                    pass
        return verified
    try:
        with _hashing:
            verified = _hasher.verify(password_hash or _DUMMY_HASH, password)
        return verified and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def is_foreign_hash(password_hash: str) -> bool:
    """True for any hash our argon2id hasher did not make in its own format: every imported
    format, argon2i and argon2d included."""
    return not password_hash.startswith("$argon2id$")


def password_needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones, and for
    every foreign format, so the first successful sign-in rewrites it as argon2id."""
    if is_foreign_hash(password_hash):
        return True
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def foreign_hash_origin(password_hash: str) -> tuple[str, bool] | None:
    """For an imported hash: its format's name and whether it is weak (md4, md5, sha1,
    unsalted digests), what the audit of its upgrade says; None for our own argon2id (and
    for a malformed string, which verifies nothing and so is never upgraded)."""
    if not is_foreign_hash(password_hash):
        return None
    try:
        return foreign_hash_scheme(password_hash), foreign_hash_is_weak(password_hash)
    except ForeignHashError:
        return None


def password_tag(secret_key: str, tenant_id: str, user_id: str, password: str) -> int:
    """A one-byte keyed tag of a user's password (the first byte of HMAC-SHA256 under a
    key derived from SECRET_KEY), above it 23 bits naming that key (a digest of it).

    Among several holders of an address, a password is verified (argon2) only against
    those whose tag matches, so a sign-in costs one verification whatever the number of
    holders; a tag made under another SECRET_KEY says so, and is not trusted. It tells 8
    bits of the password only to someone who holds both the database and SECRET_KEY."""
    key = hmac.new(secret_key.encode(), b"gatehouse:password-tag:v1", hashlib.sha256).digest()
    key_id = int.from_bytes(hashlib.sha256(key).digest()[:3], "big") >> 1
    message = f"{tenant_id}:{user_id}:{password}".encode("utf-8", "surrogatepass")
    return key_id << 8 | hmac.new(key, message, hashlib.sha256).digest()[0]


# --- imported (foreign) password hashes
#
# Users moved in from Auth0, Firebase, Django, passlib or an LDAP directory keep their
# password until their first sign-in rehashes it to argon2id (issue 24).
#
# A stored hash is ONE string that fits the `password_hash` column (255 characters):
# - a format with a self-describing string keeps it: bcrypt `$2a$`/`$2b$`/`$2y$`, argon2 PHC
#   (`$argon2i$`, `$argon2d$`, `$argon2id$`), pbkdf2 (passlib's `$pbkdf2-sha256$<rounds>$…`
#   and the PHC `$pbkdf2-sha512$i=…,l=…$…` Auth0 takes), Django's `pbkdf2_sha256$…` and LDAP
#   `{SSHA}…`;
# - the others get a PHC-like string of ours, unpadded base64 fields:
#   `$gh-foreign$md5$p=prefix,e=utf8$<salt>$<digest>`,
#   `$gh-foreign$hmac-sha256$p=suffix,e=utf8$<salt>$<key>$<mac>`,
#   `$gh-foreign$firebase-scrypt$r=8,m=14$<salt>$<separator>$<signer key>$<hash>`.
#
# A ForeignHashError never carries the hash or the password: its words are fixed, and it
# is raised `from None`, so no parser's message (which may quote its input) rides along
# into a log.

FOREIGN_HASH_PREFIX = "$gh-foreign$"
PASSWORD_HASH_MAX_LENGTH = 255  # the password_hash column

# Imported parameters are bounded, so one line of an import file cannot make each of its
# user's sign-ins cost minutes of CPU or gigabytes of memory.
BCRYPT_COSTS = range(4, 17)
PBKDF2_MAX_ITERATIONS = 5_000_000
ARGON2_MAX_MEMORY_KIB = 256 * 1024
ARGON2_MAX_TIME_COST = 16
ARGON2_MAX_PARALLELISM = 16
FIREBASE_ROUNDS = range(1, 9)  # Firebase's own ranges for a project's scrypt parameters
FIREBASE_MEM_COSTS = range(1, 15)

FOREIGN_DIGESTS = ("md4", "md5", "sha1", "sha224", "sha256", "sha384", "sha512")
WEAK_DIGESTS = frozenset({"md4", "md5", "sha1"})
PASSWORD_ENCODINGS = ("utf8", "utf16le", "ucs2", "latin1", "binary", "ascii")
SALT_POSITIONS = ("prefix", "suffix")
# Auth0's custom_password_hash algorithms whose hash.value is a self-describing string, and
# how that string starts (kept here so only core names the hashing libraries).
FOREIGN_STRING_FORMATS = {"bcrypt": "$2", "argon2": "$argon2", "pbkdf2": "$pbkdf2", "ldap": "{"}


class ForeignHashError(ValueError):
    """A hash that is malformed (`unsupported` False) or of no format we know (True)."""

    def __init__(self, reason: str, *, unsupported: bool = False) -> None:
        super().__init__(reason)
        self.unsupported = unsupported


def _foreign_digest(algorithm: str, data: bytes) -> bytes:
    """The plain digest of `data` (`md4`, `md5`, `sha1`, `sha224` … `sha512`)."""
    if algorithm == "md4":
        return MD4(data).digest()
    if algorithm not in FOREIGN_DIGESTS:
        raise ForeignHashError("unknown digest", unsupported=True)
    return hashlib.new(algorithm, data).digest()


def digest_size(algorithm: str) -> int:
    """The digest size in bytes of one of FOREIGN_DIGESTS."""
    return MD4.digest_size if algorithm == "md4" else hashlib.new(algorithm).digest_size


def _foreign_hmac(algorithm: str, key: bytes, data: bytes) -> bytes:
    """HMAC of `data` under `key` with one of FOREIGN_DIGESTS."""
    if algorithm not in FOREIGN_DIGESTS:
        raise ForeignHashError("unknown digest", unsupported=True)
    return hmac.new(key, data, MD4 if algorithm == "md4" else algorithm).digest()


def firebase_scrypt(
    password: bytes, salt: bytes, separator: bytes, signer_key: bytes, rounds: int, mem_cost: int
) -> bytes:
    """Firebase's modified scrypt: the first 32 bytes of scrypt(password, salt + separator,
    N=2^mem_cost, r=rounds, p=1) key AES-256-CTR (zero nonce), which encrypts the
    project's signer key; the ciphertext is the user's hash."""
    n = 1 << mem_cost
    derived = hashlib.scrypt(
        password,
        salt=salt + separator,
        n=n,
        r=rounds,
        p=1,
        dklen=64,
        maxmem=(256 * rounds * n) + (1 << 20),
    )
    encryptor = Cipher(algorithms.AES(derived[:32]), modes.CTR(b"\x00" * 16)).encryptor()
    return encryptor.update(signer_key) + encryptor.finalize()


def lenient_b64decode(value: str) -> bytes:
    """Standard or URL-safe base64, padded or not, also passlib's `.` for `+`."""
    cleaned = value.replace(".", "+").replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ForeignHashError("not base64") from None


def _encode_password(password: str, encoding: str) -> bytes:
    """The bytes the source system hashed, named by Node's Buffer encodings (Auth0's
    `password.encoding`). latin1/binary/ascii keep each UTF-16 unit's low byte, as Node does."""
    if encoding == "utf8":
        return password.encode("utf-8", "surrogatepass")
    units = password.encode("utf-16-le", "surrogatepass")
    if encoding in ("utf16le", "ucs2"):
        return units
    if encoding in ("latin1", "binary", "ascii"):
        return units[::2]
    raise ForeignHashError("unknown password encoding", unsupported=True)


def _int(text: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", text):
        raise ForeignHashError(f"{what} is not a number")
    return int(text)


def _params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in text.split(",") if text else ():
        name, sep, value = item.partition("=")
        if not sep or not name or name in params:
            raise ForeignHashError("malformed parameters")
        params[name] = value
    return params


# Each format's parser checks shape and bounds; with a password it recomputes and compares.

_BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")


def _bcrypt(stored: str, password: str | None) -> bool:
    match = _BCRYPT.fullmatch(stored)
    if not match:
        raise ForeignHashError("malformed bcrypt hash")
    if int(match[1]) not in BCRYPT_COSTS:
        raise ForeignHashError("bcrypt cost out of range")
    if password is None:
        return False
    # bcrypt before 5.0 (and every other implementation) hashed the first 72 bytes only;
    # $2a$/$2y$ equal $2b$ on those. checkpw compares in constant time.
    secret = password.encode("utf-8", "surrogatepass")[:72]
    try:
        return bcrypt.checkpw(secret, ("$2b$" + stored[4:]).encode("ascii"))
    except ValueError:
        return False


def _argon2(stored: str, password: str | None) -> bool:
    try:
        params = extract_parameters(stored)
    except (InvalidHashError, ValueError):
        raise ForeignHashError("malformed argon2 hash") from None
    if (
        params.memory_cost > ARGON2_MAX_MEMORY_KIB
        or params.time_cost > ARGON2_MAX_TIME_COST
        or params.parallelism > ARGON2_MAX_PARALLELISM
    ):
        raise ForeignHashError("argon2 parameters out of range")
    if password is None:
        return False
    try:  # the hasher reads the variant (i, d, id) from the string; it compares in constant time
        return _hasher.verify(stored, password)
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError):
        raise ForeignHashError("malformed argon2 hash") from None


_PBKDF2 = {f"pbkdf2-{name}": name for name in ("sha1", "sha224", "sha256", "sha384", "sha512")}
_PBKDF2["pbkdf2"] = "sha1"  # passlib's name for pbkdf2-sha1


def _pbkdf2(stored: str, password: str | None) -> bool:
    parts = stored.split("$")
    if len(parts) != 5 or parts[0]:
        raise ForeignHashError("malformed pbkdf2 hash")
    algorithm = _PBKDF2.get(parts[1])
    if algorithm is None:
        raise ForeignHashError("unknown pbkdf2 digest", unsupported=True)
    length = None
    if parts[2].isascii() and parts[2].isdigit():  # passlib: $pbkdf2-sha256$<rounds>$…
        iterations = _int(parts[2], "iterations")
    else:  # PHC: $pbkdf2-sha256$i=<rounds>,l=<length>$…
        params = _params(parts[2])
        if set(params) - {"i", "l"} or "i" not in params:
            raise ForeignHashError("malformed pbkdf2 parameters")
        iterations = _int(params["i"], "iterations")
        length = _int(params["l"], "length") if "l" in params else None
    return _pbkdf2_check(
        algorithm,
        iterations,
        lenient_b64decode(parts[3]),
        lenient_b64decode(parts[4]),
        length,
        password,
    )


def _pbkdf2_check(
    algorithm: str,
    iterations: int,
    salt: bytes,
    expected: bytes,
    length: int | None,
    password: str | None,
) -> bool:
    if not 1 <= iterations <= PBKDF2_MAX_ITERATIONS:
        raise ForeignHashError("pbkdf2 iterations out of range")
    if not salt or not 16 <= len(expected) <= 128 or length not in (None, len(expected)):
        raise ForeignHashError("malformed pbkdf2 hash")
    if password is None:
        return False
    secret = password.encode("utf-8", "surrogatepass")
    computed = hashlib.pbkdf2_hmac(algorithm, secret, salt, iterations, len(expected))
    return hmac.compare_digest(computed, expected)


def _django(stored: str, password: str | None) -> bool:
    """Django's `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`: the salt is text, used as
    its UTF-8 bytes, not decoded."""
    parts = stored.split("$")
    if len(parts) != 4:
        raise ForeignHashError("malformed Django hash")
    algorithm = {"pbkdf2_sha256": "sha256", "pbkdf2_sha1": "sha1"}.get(parts[0])
    if algorithm is None:
        raise ForeignHashError("unknown Django hasher", unsupported=True)
    iterations = _int(parts[1], "iterations")
    return _pbkdf2_check(
        algorithm, iterations, parts[2].encode("utf-8"), lenient_b64decode(parts[3]), None, password
    )


# RFC 2307 schemes: {S…} appends a salt to the password, and the salt to the digest.
_LDAP = {"SHA": "sha1", "MD5": "md5", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}
_LDAP_SALTED = {"SSHA": "sha1", "SMD5": "md5", "SSHA256": "sha256", "SSHA384": "sha384"}
_LDAP_SALTED["SSHA512"] = "sha512"


def _ldap_parse(stored: str) -> tuple[str, bytes, bytes]:
    match = re.fullmatch(r"\{([A-Za-z0-9]+)\}([A-Za-z0-9+/=]+)", stored)
    if not match:
        raise ForeignHashError("malformed LDAP hash")
    name = match[1].upper()
    algorithm = _LDAP.get(name) or _LDAP_SALTED.get(name)
    if algorithm is None:
        raise ForeignHashError("unknown LDAP scheme", unsupported=True)
    raw, size = lenient_b64decode(match[2]), digest_size(algorithm)
    salted = name in _LDAP_SALTED
    if (salted and len(raw) <= size) or (not salted and len(raw) != size):
        raise ForeignHashError("malformed LDAP hash")
    return algorithm, raw[:size], raw[size:]


def _ldap(stored: str, password: str | None) -> bool:
    algorithm, expected, salt = _ldap_parse(stored)
    if password is None:
        return False
    computed = _foreign_digest(algorithm, password.encode("utf-8", "surrogatepass") + salt)
    return hmac.compare_digest(computed, expected)


def _salted(secret: bytes, salt: bytes, position: str | None) -> bytes:
    return salt + secret if position == "prefix" else secret + salt


def _record_parse(stored: str) -> tuple[str, dict[str, str], list[bytes]]:
    """A `$gh-foreign$` string's scheme, parameters and decoded fields, checked."""
    name, _, rest = stored[len(FOREIGN_HASH_PREFIX) :].partition("$")
    fields = rest.split("$")
    params = _params(fields[0])
    values = [lenient_b64decode(field) if field else b"" for field in fields[1:]]
    algorithm = name.removeprefix("hmac-")
    if name == "firebase-scrypt":
        # AES-CTR keeps the length: the hash is as long as the signer key it encrypts.
        if len(values) != 4 or set(params) != {"r", "m"} or not values[2]:
            raise ForeignHashError("malformed Firebase scrypt hash")
        if len(values[3]) != len(values[2]):
            raise ForeignHashError("malformed Firebase scrypt hash")
        if _int(params["r"], "rounds") not in FIREBASE_ROUNDS or (
            _int(params["m"], "memory cost") not in FIREBASE_MEM_COSTS
        ):
            raise ForeignHashError("Firebase scrypt parameters out of range")
        return name, params, values
    if algorithm not in FOREIGN_DIGESTS:
        raise ForeignHashError("unknown foreign scheme", unsupported=True)
    keyed = name.startswith("hmac-")
    if len(values) != (3 if keyed else 2) or set(params) - {"p", "e"}:
        raise ForeignHashError("malformed foreign hash")
    if params.get("e", "utf8") not in PASSWORD_ENCODINGS:
        raise ForeignHashError("unknown password encoding", unsupported=True)
    if (params.get("p") in SALT_POSITIONS) != bool(values[0]):  # a salt needs its position
        raise ForeignHashError("malformed salt")
    if len(values[-1]) != digest_size(algorithm) or (keyed and not values[1]):
        raise ForeignHashError("malformed foreign hash")
    return name, params, values


def _record(stored: str, password: str | None) -> bool:
    name, params, values = _record_parse(stored)
    if password is None:
        return False
    if name == "firebase-scrypt":
        salt, separator, signer_key, expected = values
        rounds, mem_cost = int(params["r"]), int(params["m"])
        secret = password.encode("utf-8", "surrogatepass")
        computed = firebase_scrypt(secret, salt, separator, signer_key, rounds, mem_cost)
        return hmac.compare_digest(computed, expected)
    message = _salted(
        _encode_password(password, params.get("e", "utf8")), values[0], params.get("p")
    )
    if name.startswith("hmac-"):
        computed = _foreign_hmac(name.removeprefix("hmac-"), values[1], message)
    else:
        computed = _foreign_digest(name, message)
    return hmac.compare_digest(computed, values[-1])


def _foreign_format(stored: str) -> Callable[[str, str | None], bool]:
    """The checker of `stored`'s format: called without a password it only checks the
    string; with one it also verifies it. ForeignHashError when malformed or unknown."""
    if not isinstance(stored, str) or len(stored) > PASSWORD_HASH_MAX_LENGTH:
        raise ForeignHashError("hash missing or too long")
    if stored.startswith(FOREIGN_HASH_PREFIX):
        return _record
    if stored.startswith("$argon2"):
        return _argon2
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        return _bcrypt
    if stored.startswith("$pbkdf2"):
        return _pbkdf2
    if stored.startswith(("pbkdf2_sha256$", "pbkdf2_sha1$")):
        return _django
    if stored.startswith("{"):
        return _ldap
    raise ForeignHashError("unknown hash format", unsupported=True)


def check_foreign_hash(stored: str) -> None:
    """Raise ForeignHashError unless `stored` is a well-formed hash of a known format within
    bounds."""
    _foreign_format(stored)(stored, None)


def foreign_hash_is_fast(stored: str) -> bool:
    """True for the plain, keyed and LDAP digests: microseconds to check, no work factor."""
    check_foreign_hash(stored)
    return stored.startswith("{") or (
        stored.startswith(FOREIGN_HASH_PREFIX)
        and not stored.startswith(FOREIGN_HASH_PREFIX + "firebase-scrypt$")
    )


def foreign_hash_is_weak(stored: str) -> bool:
    """md4, md5 and sha1 (salted or not, plain, keyed or LDAP), and any unsalted digest."""
    check_foreign_hash(stored)
    if stored.startswith(FOREIGN_HASH_PREFIX):
        name, _, values = _record_parse(stored)
        if name == "firebase-scrypt":
            return False
        return name.removeprefix("hmac-") in WEAK_DIGESTS or not values[0]
    if stored.startswith("{"):
        algorithm, _, salt = _ldap_parse(stored)
        return algorithm in WEAK_DIGESTS or not salt
    return False


def foreign_hash_scheme(stored: str) -> str:
    """The name of a hash's format, for an audit event (`{"from": "bcrypt"}`): fixed words
    only, never a piece of the hash: `bcrypt`, `argon2i`/`argon2d`/`argon2id`, `pbkdf2-sha256`
    (passlib/PHC), `django-pbkdf2_sha256`, `ldap-ssha`, `md5`, `hmac-sha256`,
    `firebase-scrypt`. ForeignHashError when malformed."""
    check_foreign_hash(stored)
    if stored.startswith(FOREIGN_HASH_PREFIX):
        return _record_parse(stored)[0]
    if stored.startswith("$argon2"):
        return next(v for v in ("argon2id", "argon2i", "argon2d") if stored.startswith(f"${v}$"))
    if stored.startswith("$2"):
        return "bcrypt"
    if stored.startswith("$pbkdf2"):
        return f"pbkdf2-{_PBKDF2[stored.split('$')[1]]}"
    if stored.startswith("{"):
        name = stored[1 : stored.index("}")].upper()
        return f"ldap-{name.lower()}" if name in _LDAP or name in _LDAP_SALTED else "ldap"
    return "django-" + stored.split("$", 1)[0]


def foreign_hash_record(scheme: str, params: dict[str, str | int], *fields: bytes) -> str:
    """One `$gh-foreign$` string, checked: `foreign_hash_record("md5", {"p": "prefix", "e":
    "utf8"}, salt, digest)`, `foreign_hash_record("hmac-sha256", …, salt, key, mac)`,
    `foreign_hash_record("firebase-scrypt", {"r": 8, "m": 14}, salt, separator, signer_key,
    hash)`."""
    text = ",".join(f"{name}={value}" for name, value in params.items())
    encoded = (base64.b64encode(field).decode("ascii").rstrip("=") for field in fields)
    stored = "$".join([FOREIGN_HASH_PREFIX + scheme, text, *encoded])
    check_foreign_hash(stored)
    return stored


# --- MD4 (RFC 1320)
#
# In pure Python with the standard digest interface (update/copy/digest), so `hmac` can
# take it too. OpenSSL 3 dropped MD4 from its default provider and no well-kept package
# offers it alone, yet Auth0 still imports md4 hashes (and NTLM is md4 of UTF-16LE). Used
# only to verify imported password hashes; never for anything new.


def _rol(value: int, shift: int) -> int:
    value &= 0xFFFFFFFF
    return ((value << shift) | (value >> (32 - shift))) & 0xFFFFFFFF


_MD4_ROUNDS: tuple[
    tuple[Callable[[int, int, int], int], int, tuple[int, ...], tuple[int, ...]], ...
]
_MD4_ROUNDS = (
    (lambda x, y, z: (x & y) | (~x & z), 0, tuple(range(16)), (3, 7, 11, 19)),
    (
        lambda x, y, z: (x & y) | (x & z) | (y & z),
        0x5A827999,
        (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
        (3, 5, 9, 13),
    ),
    (
        lambda x, y, z: x ^ y ^ z,
        0x6ED9EBA1,
        (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15),
        (3, 9, 11, 15),
    ),
)


def _md4_block(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    words = struct.unpack("<16I", block)
    a, b, c, d = state
    for function, constant, order, shifts in _MD4_ROUNDS:
        for step, index in enumerate(order):
            a = _rol(a + function(b, c, d) + words[index] + constant, shifts[step % 4])
            a, b, c, d = d, a, b, c
    s0, s1, s2, s3 = state
    mask = 0xFFFFFFFF
    return (s0 + a) & mask, (s1 + b) & mask, (s2 + c) & mask, (s3 + d) & mask


class MD4:
    """MD4 with the standard digest interface (update/copy/digest), so `hmac` can take it too."""

    name, digest_size, block_size = "md4", 16, 64

    def __init__(self, data: bytes = b"") -> None:
        self._state = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
        self._pending = b""
        self._length = 0
        self.update(data)

    def update(self, data: bytes) -> None:
        self._length += len(data)
        pending = self._pending + bytes(data)
        whole = len(pending) - len(pending) % 64
        for offset in range(0, whole, 64):
            self._state = _md4_block(self._state, pending[offset : offset + 64])
        self._pending = pending[whole:]

    def copy(self) -> MD4:
        clone = MD4()
        clone._state, clone._pending, clone._length = self._state, self._pending, self._length
        return clone

    def digest(self) -> bytes:
        tail = self._pending + b"\x80" + b"\x00" * ((55 - len(self._pending)) % 64)
        tail += struct.pack("<Q", (self._length * 8) & 0xFFFFFFFFFFFFFFFF)
        state = self._state
        for offset in range(0, len(tail), 64):
            state = _md4_block(state, tail[offset : offset + 64])
        return struct.pack("<4I", *state)

    def hexdigest(self) -> str:
        return self.digest().hex()


# --- digests, keyed digests and constant-time compares


def keyed_digest(secret_key: str, purpose: str, message: str) -> bytes:
    """HMAC-SHA256 of `message` under a key derived from SECRET_KEY for `purpose`: a stable
    opaque value (a passkey's user handle) that tells nothing without the key."""
    key = hmac.new(secret_key.encode(), f"gatehouse:{purpose}:v1".encode(), hashlib.sha256).digest()
    return hmac.new(key, message.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def left_half_hash(value: str) -> str:
    """base64url of the left half of SHA-256(value): OIDC's `at_hash` of an access token
    that came with an RS256 ID token (Core §3.1.3.6)."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return _b64url_encode(digest[: len(digest) // 2])


def pkce_s256(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier: base64url(SHA-256(verifier)), RFC 7636 §4.2."""
    return _b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# --- random values


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def random_hex(nbytes: int = 8) -> str:
    return secrets.token_hex(nbytes)


def random_bytes(nbytes: int) -> bytes:
    return secrets.token_bytes(nbytes)


def random_string(alphabet: str, length: int) -> str:
    """`length` characters drawn uniformly from `alphabet` (codes a person types)."""
    return "".join(secrets.choice(alphabet) for _ in range(length))


# --- webhook signatures (Standard Webhooks)

WEBHOOK_SECRET_PREFIX = "whsec_"


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 24 random bytes in base64."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def webhook_signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under a `whsec_` secret's key
    (Standard Webhooks' symmetric signature)."""
    key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode("utf-8", "surrogatepass")
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


# --- signed tokens (itsdangerous)


class SignedTokenError(Exception):
    """A signed token was forged, malformed or expired."""


def signed_dumps(secret_key: str, purpose: str, payload: Any) -> str:
    """Sign `payload` for one purpose (the salt), so tokens of one kind never pass as another."""
    return URLSafeTimedSerializer(secret_key, salt=purpose).dumps(payload)


def signed_loads(secret_key: str, purpose: str, token: str, max_age: int) -> Any:
    """Verify and decode a token made by `signed_dumps`; raises SignedTokenError."""
    try:
        return URLSafeTimedSerializer(secret_key, salt=purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise SignedTokenError("expired") from exc
    except BadSignature as exc:
        raise SignedTokenError("invalid") from exc


# --- encryption: the key ring (secrets at rest) and the passphrase cipher (exports)


class KeyRingError(Exception):
    """A ciphertext could not be decrypted with any key of the ring."""


class KeyRing:
    """AES-256-GCM with several keys: the first encrypts, all decrypt.

    A ciphertext is `v1.<key id>.<nonce+ciphertext>`; the key id (a digest prefix of the
    key) says which key made it, so rotation can find and rewrite old ciphertexts.
    """

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("the key ring needs at least one key")
        self._keys: list[tuple[str, AESGCM]] = []
        for raw in keys:
            try:
                key = _b64url_decode(raw)
            except ValueError as exc:
                raise ValueError("each encryption key must be urlsafe-base64") from exc
            if len(key) != 32:
                raise ValueError("each encryption key must be 32 bytes, urlsafe-base64 encoded")
            self._keys.append((hashlib.sha256(key).hexdigest()[:8], AESGCM(key)))

    @property
    def current_key_id(self) -> str:
        return self._keys[0][0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key of the ring, the current one first."""
        return tuple(key_id for key_id, _ in self._keys)

    def encrypt(self, plaintext: bytes, associated_data: bytes | None = None) -> str:
        key_id, aead = self._keys[0]
        nonce = random_bytes(12)
        sealed = aead.encrypt(nonce, plaintext, associated_data)
        return f"v1.{key_id}.{_b64url_encode(nonce + sealed)}"

    def decrypt(self, ciphertext: str, associated_data: bytes | None = None) -> bytes:
        try:
            version, key_id, body = ciphertext.split(".", 2)
            raw = _b64url_decode(body)
        except ValueError as exc:
            raise KeyRingError("malformed ciphertext") from exc
        if version != "v1":
            raise KeyRingError("unknown ciphertext version")
        for candidate_id, aead in self._keys:
            if candidate_id == key_id:
                try:
                    return aead.decrypt(raw[:12], raw[12:], associated_data)
                except Exception as exc:
                    raise KeyRingError("ciphertext failed authentication") from exc
        raise KeyRingError("no key in the ring made this ciphertext")

    def key_id_of(self, ciphertext: str) -> str:
        return ciphertext.split(".", 2)[1]


def keyring() -> KeyRing:
    """The application's key ring (built once from ENCRYPTION_KEYS)."""
    from flask import current_app

    ring = current_app.extensions.get("gatehouse.keyring")
    if ring is None:
        ring = current_app.extensions["gatehouse.keyring"] = KeyRing(
            current_app.config["ENCRYPTION_KEYS"]
        )
    return ring


class PassphraseCipher:
    """AES-256-GCM under a key that scrypt derives from a passphrase and a salt. `check`,
    derived with the key (not from it), is stored beside the data: it tells a wrong
    passphrase from altered data. The caller picks nonces and associated data (the sealed
    stream of app/core/sealed.py: a prefix and each chunk's index)."""

    # scrypt at n=2**15, r=8, p=1 (32 MiB, ~0.1 s): the cost of each passphrase guess.
    SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
    CHECK_BYTES = 16
    TAG_BYTES = 16  # what AES-GCM adds to each sealed message

    def __init__(self, passphrase: str, salt: bytes) -> None:
        kdf = Scrypt(
            salt=salt,
            length=32 + self.CHECK_BYTES,
            n=self.SCRYPT_N,
            r=self.SCRYPT_R,
            p=self.SCRYPT_P,
        )
        material = kdf.derive(passphrase.encode("utf-8"))
        self._aead = AESGCM(material[:32])
        self.check = material[32:]

    def check_matches(self, check: bytes) -> bool:
        """Whether a stored check value is this passphrase's (compared in constant time)."""
        return hmac.compare_digest(self.check, check)

    def seal(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes:
        return self._aead.encrypt(nonce, data, associated_data)

    def unseal(self, nonce: bytes, sealed: bytes, associated_data: bytes) -> bytes | None:
        """The data, or None when it (or the associated data) fails authentication."""
        try:
            return self._aead.decrypt(nonce, sealed, associated_data)
        except InvalidTag:
            return None


# --- base64url without padding (key ring keys and ciphertexts, at_hash, PKCE)


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64url_encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")
