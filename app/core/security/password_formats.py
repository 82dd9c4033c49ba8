"""Foreign password hash formats, verified in constant time, so users moved in from Auth0,
Firebase, Django, passlib or an LDAP directory keep their password until their first
sign-in rehashes it to argon2id (issue 24). Part of core.security, where every hashing
primitive lives (house rule); app/credentials/foreign_hashes.py builds the strings from
import files and maps errors to the domain.

A stored hash is ONE string that fits the `password_hash` column (255 characters):
- a format with a self-describing string keeps it: bcrypt `$2a$`/`$2b$`/`$2y$`, argon2 PHC
  (`$argon2i$`, `$argon2d$`, `$argon2id$`), pbkdf2 (passlib's `$pbkdf2-sha256$<rounds>$…`
  and the PHC `$pbkdf2-sha512$i=…,l=…$…` Auth0 takes), Django's `pbkdf2_sha256$…` and LDAP
  `{SSHA}…`;
- the others get a PHC-like string of ours, unpadded base64 fields:
  `$gh-foreign$md5$p=prefix,e=utf8$<salt>$<digest>`,
  `$gh-foreign$hmac-sha256$p=suffix,e=utf8$<salt>$<key>$<mac>`,
  `$gh-foreign$firebase-scrypt$r=8,m=14$<salt>$<separator>$<signer key>$<hash>`.

A FormatError never carries the hash or the password: its words are fixed, and it is raised
`from None`, so no parser's message (which may quote its input) rides along into a log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable

import bcrypt
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.core.security.md4 import MD4

FOREIGN = "$gh-foreign$"
MAX_LENGTH = 255  # the password_hash column

# Imported parameters are bounded, so one line of an import file cannot make each of its
# user's sign-ins cost minutes of CPU or gigabytes of memory.
BCRYPT_COSTS = range(4, 17)
PBKDF2_MAX_ITERATIONS = 5_000_000
ARGON2_MAX_MEMORY_KIB = 256 * 1024
ARGON2_MAX_TIME_COST = 16
ARGON2_MAX_PARALLELISM = 16
FIREBASE_ROUNDS = range(1, 9)  # Firebase's own ranges for a project's scrypt parameters
FIREBASE_MEM_COSTS = range(1, 15)

DIGESTS = ("md4", "md5", "sha1", "sha224", "sha256", "sha384", "sha512")
WEAK_DIGESTS = frozenset({"md4", "md5", "sha1"})
PASSWORD_ENCODINGS = ("utf8", "utf16le", "ucs2", "latin1", "binary", "ascii")
SALT_POSITIONS = ("prefix", "suffix")
# Auth0's custom_password_hash algorithms whose hash.value is a self-describing string, and
# how that string starts (kept here so only core names the hashing libraries).
STRING_FORMATS = {"bcrypt": "$2", "argon2": "$argon2", "pbkdf2": "$pbkdf2", "ldap": "{"}


class FormatError(ValueError):
    """A hash that is malformed (`unsupported` False) or of no format we know (True)."""

    def __init__(self, reason: str, *, unsupported: bool = False) -> None:
        super().__init__(reason)
        self.unsupported = unsupported


def digest(algorithm: str, data: bytes) -> bytes:
    """The plain digest of `data` (`md4`, `md5`, `sha1`, `sha224` … `sha512`)."""
    if algorithm == "md4":
        return MD4(data).digest()
    if algorithm not in DIGESTS:
        raise FormatError("unknown digest", unsupported=True)
    return hashlib.new(algorithm, data).digest()


def digest_size(algorithm: str) -> int:
    return MD4.digest_size if algorithm == "md4" else hashlib.new(algorithm).digest_size


def keyed_digest(algorithm: str, key: bytes, data: bytes) -> bytes:
    """HMAC of `data` under `key` with one of DIGESTS."""
    if algorithm not in DIGESTS:
        raise FormatError("unknown digest", unsupported=True)
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


# --- encodings


def b64decode(value: str) -> bytes:
    """Standard or URL-safe base64, padded or not, also passlib's `.` for `+`."""
    cleaned = value.replace(".", "+").replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FormatError("not base64") from None


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def encode_password(password: str, encoding: str) -> bytes:
    """The bytes the source system hashed, named by Node's Buffer encodings (Auth0's
    `password.encoding`). latin1/binary/ascii keep each UTF-16 unit's low byte, as Node does."""
    if encoding == "utf8":
        return password.encode("utf-8", "surrogatepass")
    units = password.encode("utf-16-le", "surrogatepass")
    if encoding in ("utf16le", "ucs2"):
        return units
    if encoding in ("latin1", "binary", "ascii"):
        return units[::2]
    raise FormatError("unknown password encoding", unsupported=True)


def _int(text: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", text):
        raise FormatError(f"{what} is not a number")
    return int(text)


def _params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in text.split(",") if text else ():
        name, sep, value = item.partition("=")
        if not sep or not name or name in params:
            raise FormatError("malformed parameters")
        params[name] = value
    return params


# --- the formats: each parser checks shape and bounds; verify recomputes and compares


_BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")


def _bcrypt(stored: str, password: str | None) -> bool:
    match = _BCRYPT.fullmatch(stored)
    if not match:
        raise FormatError("malformed bcrypt hash")
    if int(match[1]) not in BCRYPT_COSTS:
        raise FormatError("bcrypt cost out of range")
    if password is None:
        return False
    # bcrypt before 5.0 (and every other implementation) hashed the first 72 bytes only;
    # $2a$/$2y$ equal $2b$ on those. checkpw compares in constant time.
    secret = password.encode("utf-8", "surrogatepass")[:72]
    try:
        return bcrypt.checkpw(secret, ("$2b$" + stored[4:]).encode("ascii"))
    except ValueError:
        return False


_argon2 = PasswordHasher()


def _argon2_hash(stored: str, password: str | None) -> bool:
    try:
        params = extract_parameters(stored)
    except (InvalidHashError, ValueError):
        raise FormatError("malformed argon2 hash") from None
    if (
        params.memory_cost > ARGON2_MAX_MEMORY_KIB
        or params.time_cost > ARGON2_MAX_TIME_COST
        or params.parallelism > ARGON2_MAX_PARALLELISM
    ):
        raise FormatError("argon2 parameters out of range")
    if password is None:
        return False
    try:  # the hasher reads the variant (i, d, id) from the string; it compares in constant time
        return _argon2.verify(stored, password)
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError):
        raise FormatError("malformed argon2 hash") from None


_PBKDF2 = {f"pbkdf2-{name}": name for name in ("sha1", "sha224", "sha256", "sha384", "sha512")}
_PBKDF2["pbkdf2"] = "sha1"  # passlib's name for pbkdf2-sha1


def _pbkdf2(stored: str, password: str | None) -> bool:
    parts = stored.split("$")
    if len(parts) != 5 or parts[0]:
        raise FormatError("malformed pbkdf2 hash")
    algorithm = _PBKDF2.get(parts[1])
    if algorithm is None:
        raise FormatError("unknown pbkdf2 digest", unsupported=True)
    length = None
    if parts[2].isascii() and parts[2].isdigit():  # passlib: $pbkdf2-sha256$<rounds>$…
        iterations = _int(parts[2], "iterations")
    else:  # PHC: $pbkdf2-sha256$i=<rounds>,l=<length>$…
        params = _params(parts[2])
        if set(params) - {"i", "l"} or "i" not in params:
            raise FormatError("malformed pbkdf2 parameters")
        iterations = _int(params["i"], "iterations")
        length = _int(params["l"], "length") if "l" in params else None
    return _pbkdf2_check(
        algorithm, iterations, b64decode(parts[3]), b64decode(parts[4]), length, password
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
        raise FormatError("pbkdf2 iterations out of range")
    if not salt or not 16 <= len(expected) <= 128 or length not in (None, len(expected)):
        raise FormatError("malformed pbkdf2 hash")
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
        raise FormatError("malformed Django hash")
    algorithm = {"pbkdf2_sha256": "sha256", "pbkdf2_sha1": "sha1"}.get(parts[0])
    if algorithm is None:
        raise FormatError("unknown Django hasher", unsupported=True)
    iterations = _int(parts[1], "iterations")
    return _pbkdf2_check(
        algorithm, iterations, parts[2].encode("utf-8"), b64decode(parts[3]), None, password
    )


# RFC 2307 schemes: {S…} appends a salt to the password, and the salt to the digest.
_LDAP = {"SHA": "sha1", "MD5": "md5", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}
_LDAP_SALTED = {"SSHA": "sha1", "SMD5": "md5", "SSHA256": "sha256", "SSHA384": "sha384"}
_LDAP_SALTED["SSHA512"] = "sha512"


def _ldap_parse(stored: str) -> tuple[str, bytes, bytes]:
    match = re.fullmatch(r"\{([A-Za-z0-9]+)\}([A-Za-z0-9+/=]+)", stored)
    if not match:
        raise FormatError("malformed LDAP hash")
    scheme = match[1].upper()
    algorithm = _LDAP.get(scheme) or _LDAP_SALTED.get(scheme)
    if algorithm is None:
        raise FormatError("unknown LDAP scheme", unsupported=True)
    raw, size = b64decode(match[2]), digest_size(algorithm)
    salted = scheme in _LDAP_SALTED
    if (salted and len(raw) <= size) or (not salted and len(raw) != size):
        raise FormatError("malformed LDAP hash")
    return algorithm, raw[:size], raw[size:]


def _ldap(stored: str, password: str | None) -> bool:
    algorithm, expected, salt = _ldap_parse(stored)
    if password is None:
        return False
    computed = digest(algorithm, password.encode("utf-8", "surrogatepass") + salt)
    return hmac.compare_digest(computed, expected)


def _salted(secret: bytes, salt: bytes, position: str | None) -> bytes:
    return salt + secret if position == "prefix" else secret + salt


def _foreign_parse(stored: str) -> tuple[str, dict[str, str], list[bytes]]:
    scheme, _, rest = stored[len(FOREIGN) :].partition("$")
    fields = rest.split("$")
    params = _params(fields[0])
    values = [b64decode(field) if field else b"" for field in fields[1:]]
    algorithm = scheme.removeprefix("hmac-")
    if scheme == "firebase-scrypt":
        # AES-CTR keeps the length: the hash is as long as the signer key it encrypts.
        if len(values) != 4 or set(params) != {"r", "m"} or not values[2]:
            raise FormatError("malformed Firebase scrypt hash")
        if len(values[3]) != len(values[2]):
            raise FormatError("malformed Firebase scrypt hash")
        if _int(params["r"], "rounds") not in FIREBASE_ROUNDS or (
            _int(params["m"], "memory cost") not in FIREBASE_MEM_COSTS
        ):
            raise FormatError("Firebase scrypt parameters out of range")
        return scheme, params, values
    if algorithm not in DIGESTS:
        raise FormatError("unknown foreign scheme", unsupported=True)
    keyed = scheme.startswith("hmac-")
    if len(values) != (3 if keyed else 2) or set(params) - {"p", "e"}:
        raise FormatError("malformed foreign hash")
    if params.get("e", "utf8") not in PASSWORD_ENCODINGS:
        raise FormatError("unknown password encoding", unsupported=True)
    if (params.get("p") in SALT_POSITIONS) != bool(values[0]):  # a salt needs its position
        raise FormatError("malformed salt")
    if len(values[-1]) != digest_size(algorithm) or (keyed and not values[1]):
        raise FormatError("malformed foreign hash")
    return scheme, params, values


def _foreign(stored: str, password: str | None) -> bool:
    scheme, params, values = _foreign_parse(stored)
    if password is None:
        return False
    if scheme == "firebase-scrypt":
        salt, separator, signer_key, expected = values
        rounds, mem_cost = int(params["r"]), int(params["m"])
        secret = password.encode("utf-8", "surrogatepass")
        computed = firebase_scrypt(secret, salt, separator, signer_key, rounds, mem_cost)
        return hmac.compare_digest(computed, expected)
    message = _salted(
        encode_password(password, params.get("e", "utf8")), values[0], params.get("p")
    )
    if scheme.startswith("hmac-"):
        computed = keyed_digest(scheme.removeprefix("hmac-"), values[1], message)
    else:
        computed = digest(scheme, message)
    return hmac.compare_digest(computed, values[-1])


def _format(stored: str) -> Callable[[str, str | None], bool]:
    if not isinstance(stored, str) or len(stored) > MAX_LENGTH:
        raise FormatError("hash missing or too long")
    if stored.startswith(FOREIGN):
        return _foreign
    if stored.startswith("$argon2"):
        return _argon2_hash
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        return _bcrypt
    if stored.startswith("$pbkdf2"):
        return _pbkdf2
    if stored.startswith(("pbkdf2_sha256$", "pbkdf2_sha1$")):
        return _django
    if stored.startswith("{"):
        return _ldap
    raise FormatError("unknown hash format", unsupported=True)


def check(stored: str) -> None:
    """Raise FormatError unless `stored` is a well-formed hash of a known format within bounds."""
    _format(stored)(stored, None)


def verify(stored: str, password: str) -> bool:
    """Whether `password` matches `stored`, any format here; FormatError when malformed."""
    return _format(stored)(stored, password)


def is_fast(stored: str) -> bool:
    """True for the plain, keyed and LDAP digests: microseconds to check, no work factor."""
    _format(stored)(stored, None)
    return stored.startswith("{") or (
        stored.startswith(FOREIGN) and not stored.startswith(FOREIGN + "firebase-scrypt$")
    )


def is_weak(stored: str) -> bool:
    """md4, md5 and sha1 (salted or not, plain, keyed or LDAP), and any unsalted digest."""
    _format(stored)(stored, None)
    if stored.startswith(FOREIGN):
        scheme, _, values = _foreign_parse(stored)
        if scheme == "firebase-scrypt":
            return False
        return scheme.removeprefix("hmac-") in WEAK_DIGESTS or not values[0]
    if stored.startswith("{"):
        algorithm, _, salt = _ldap_parse(stored)
        return algorithm in WEAK_DIGESTS or not salt
    return False


def scheme(stored: str) -> str:
    """The name of a hash's format, for an audit event (`{"from": "bcrypt"}`): fixed words
    only, never a piece of the hash: `bcrypt`, `argon2i`/`argon2d`/`argon2id`, `pbkdf2-sha256`
    (passlib/PHC), `django-pbkdf2_sha256`, `ldap-ssha`, `md5`, `hmac-sha256`,
    `firebase-scrypt`. FormatError when malformed."""
    _format(stored)(stored, None)
    if stored.startswith(FOREIGN):
        return _foreign_parse(stored)[0]
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


def record(scheme: str, params: dict[str, str | int], *fields: bytes) -> str:
    """One `$gh-foreign$` string, checked: `record("md5", {"p": "prefix", "e": "utf8"},
    salt, digest)`, `record("hmac-sha256", …, salt, key, mac)`,
    `record("firebase-scrypt", {"r": 8, "m": 14}, salt, separator, signer_key, hash)`."""
    text = ",".join(f"{name}={value}" for name, value in params.items())
    stored = "$".join([FOREIGN + scheme, text, *(b64encode(field) for field in fields)])
    check(stored)
    return stored
