"""Foreign password hashes (issue 24, the pure core): every format an import can bring is
parsed, stored in one column-sized string, verified with its own algorithm in constant
time, marked weak where it is, and always rehashed; malformed and unknown input is refused
with a domain code that never quotes the hash. Expected values come from the reference
libraries (hashlib, hmac, bcrypt, argon2-cffi) or published vectors (RFC 1320, Firebase's
scrypt README), never from the code under test. Unit tests: no database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import bcrypt
import pytest
from argon2 import PasswordHasher, Type

from app.core import security
from app.core.errors import Invalid
from app.core.security import MD4
from app.credentials import foreign_hashes
from app.credentials.foreign_hashes import FirebaseHashConfig

# Not tests.factories.PASSWORD: a non-ASCII password, so the password encodings matter.
SNOWMAN = "correct horse ☃ battery"
WRONG = "correct horse ☃ battery!"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def custom(algorithm: str, hash_: dict[str, Any], **extra: Any) -> str:
    return foreign_hashes.from_custom_password_hash(
        {"algorithm": algorithm, "hash": hash_, **extra}
    )


def assert_verifies(stored: str, password: str = SNOWMAN) -> None:
    assert len(stored) <= 255  # the password_hash column
    assert foreign_hashes.verify(stored, password)
    assert security.verify_password(stored, password)
    assert not foreign_hashes.verify(stored, WRONG)
    assert not security.verify_password(stored, "")
    assert foreign_hashes.needs_rehash(stored)


# --- MD4 and Firebase: published vectors


@pytest.mark.parametrize(
    ("message", "expected"),
    [  # RFC 1320 appendix A.5
        (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
        (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
        (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
        (b"message digest", "d9130a8164549fe818874806e1c7014b"),
        (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
        (
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "043f8582f241db351ce627e153e7f0e4",
        ),
        (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
    ],
)
def test_md4_matches_rfc_1320(message: bytes, expected: str) -> None:
    assert MD4(message).hexdigest() == expected
    split = MD4(message[:3])
    split.update(message[3:])
    assert split.copy().hexdigest() == expected


def test_auth0_md4_with_a_salt_prefix_and_utf16le_passwords() -> None:
    # RFC 1320: md4("message digest"); "mess" as a utf8 salt in front of "age digest".
    stored = custom(
        "md4",
        {"value": "d9130a8164549fe818874806e1c7014b", "encoding": "hex"},
        salt={"value": "mess", "encoding": "utf8", "position": "prefix"},
    )
    assert_verifies(stored, "age digest")
    # The NT hash of "password" (md4 of its UTF-16LE), published with every NTLM reference.
    nt = custom(
        "md4",
        {"value": "8846f7eaee8fb117ad06bdd830b7586c", "encoding": "hex"},
        password={"encoding": "utf16le"},
    )
    assert_verifies(nt, "password")
    assert foreign_hashes.is_weak(stored) and foreign_hashes.is_weak(nt)


FIREBASE = {  # github.com/firebase/scrypt README: the project parameters and one user
    "base64_signer_key": (
        "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA=="
    ),
    "base64_salt_separator": "Bw==",
    "rounds": 8,
    "mem_cost": 14,
}
FIREBASE_SALT = "42xEC+ixf3L2lw=="
FIREBASE_HASH = (
    "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ=="
)


def test_firebase_scrypt_matches_firebases_published_vector() -> None:
    config = FirebaseHashConfig.from_mapping(FIREBASE)
    stored = foreign_hashes.from_firebase(FIREBASE_HASH, FIREBASE_SALT, config)
    assert stored.startswith("$gh-foreign$firebase-scrypt$r=8,m=14$")
    assert_verifies(stored, "user1password")
    assert not foreign_hashes.is_weak(stored)


@pytest.mark.parametrize(
    "change",
    [
        {"rounds": 9},
        {"mem_cost": 15},
        {"mem_cost": "14"},
        {"base64_signer_key": "not base64!"},
        {"base64_signer_key": None},
    ],
)
def test_firebase_parameters_out_of_range_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as error:
        FirebaseHashConfig.from_mapping({**FIREBASE, **change})
    assert error.value.code == "invalid_hash"


# --- Auth0 digests: every algorithm, hash encoding, salt encoding and position


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512"])
@pytest.mark.parametrize("hash_encoding", ["hex", "base64"])
@pytest.mark.parametrize("position", ["prefix", "suffix", None])
def test_auth0_digests(algorithm: str, hash_encoding: str, position: str | None) -> None:
    salt = b"NaCl\x00\xff"
    secret = SNOWMAN.encode()
    message = (
        secret if position is None else salt + secret if position == "prefix" else secret + salt
    )
    raw = hashlib.new(algorithm, message).digest()
    value = raw.hex() if hash_encoding == "hex" else b64(raw)
    extra = (
        {}
        if position is None
        else {"salt": {"value": salt.hex(), "encoding": "hex", "position": position}}
    )
    stored = custom(algorithm, {"value": value, "encoding": hash_encoding}, **extra)
    assert_verifies(stored)
    # Without `hash.encoding` the digest's length says which it is (hex is twice the size).
    assert custom(algorithm, {"value": value}, **extra) == stored
    assert foreign_hashes.is_weak(stored) == (algorithm in ("md5", "sha1") or position is None)


@pytest.mark.parametrize(
    ("salt", "salt_bytes"),
    [
        ({"value": "pepper and salt", "encoding": "utf8"}, b"pepper and salt"),
        ({"value": "pepper and salt"}, b"pepper and salt"),  # utf8 is the default
        ({"value": b64(b"\x01\x02salt"), "encoding": "base64"}, b"\x01\x02salt"),
        ({"value": "0102ff", "encoding": "hex"}, b"\x01\x02\xff"),
    ],
)
def test_salt_encodings(salt: dict[str, str], salt_bytes: bytes) -> None:
    expected = hashlib.sha256(SNOWMAN.encode() + salt_bytes).hexdigest()
    salt = {**salt, "position": "suffix"}
    assert_verifies(custom("sha256", {"value": expected, "encoding": "hex"}, salt=salt))


@pytest.mark.parametrize(
    ("encoding", "codec"),
    [("utf16le", "utf-16-le"), ("ucs2", "utf-16-le"), ("latin1", "latin-1"), ("utf8", "utf-8")],
)
def test_password_encodings(encoding: str, codec: str) -> None:
    password = "Grüße"
    expected = hashlib.sha512(password.encode(codec)).hexdigest()
    stored = custom(
        "sha512", {"value": expected, "encoding": "hex"}, password={"encoding": encoding}
    )
    assert_verifies(stored, password)


@pytest.mark.parametrize("digest", ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"])
@pytest.mark.parametrize("key_encoding", ["utf8", "base64", "hex"])
def test_auth0_hmac(digest: str, key_encoding: str) -> None:
    key = b"server-side pepper"
    encoded_key = {"utf8": key.decode(), "base64": b64(key), "hex": key.hex()}[key_encoding]
    mac = hmac.new(key, b"salty" + SNOWMAN.encode(), digest).digest()
    stored = custom(
        "hmac",
        {
            "value": b64(mac),
            "encoding": "base64",
            "digest": digest,
            "key": {"value": encoded_key, "encoding": key_encoding},
        },
        salt={"value": "salty", "encoding": "utf8", "position": "prefix"},
    )
    assert stored.startswith(f"$gh-foreign$hmac-{digest}$")
    assert_verifies(stored)
    assert foreign_hashes.is_weak(stored) == (digest in ("md5", "sha1"))


def test_auth0_hmac_md4() -> None:
    # No published HMAC-MD4 vector: the RFC 2104 construction written out over the MD4
    # that test_md4_matches_rfc_1320 proves, so a slip in hmac's use of it shows.
    key, message = b"k" * 70, b"salt" + SNOWMAN.encode()  # a key longer than a block
    block = MD4(key).digest().ljust(64, b"\0")
    inner = MD4(bytes(x ^ 0x36 for x in block) + message).digest()
    mac = MD4(bytes(x ^ 0x5C for x in block) + inner).hexdigest()
    stored = custom(
        "hmac",
        {"value": mac, "encoding": "hex", "digest": "md4", "key": {"value": "k" * 70}},
        salt={"value": "salt", "position": "prefix"},
    )
    assert_verifies(stored)
    assert foreign_hashes.is_weak(stored)


# --- self-describing formats


@pytest.mark.parametrize("prefix", [b"2a", b"2b"])
def test_bcrypt(prefix: bytes) -> None:
    made = bcrypt.hashpw(SNOWMAN.encode(), bcrypt.gensalt(rounds=4, prefix=prefix)).decode()
    assert foreign_hashes.from_auth0_user({"password_hash": made}) == made
    assert_verifies(made)
    assert custom("bcrypt", {"value": made, "encoding": "utf8"}) == made
    assert not foreign_hashes.is_weak(made)


def test_bcrypt_2y_and_passwords_past_72_bytes() -> None:
    # PHP writes $2y$, the same algorithm as $2b$; every bcrypt before 5.0 used 72 bytes only.
    long_password = "x" * 80
    made = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    php = "$2y$" + made[4:]
    assert foreign_hashes.from_string(php) == php
    assert_verifies(php, long_password)


@pytest.mark.parametrize("variant", [Type.I, Type.D, Type.ID])
def test_argon2_variants(variant: Type) -> None:
    made = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=variant).hash(SNOWMAN)
    assert custom("argon2", {"value": made, "encoding": "utf8"}) == made
    assert_verifies(made)


def test_native_argon2id_needs_no_rehash_and_is_not_foreign() -> None:
    native = security.hash_password(SNOWMAN)
    assert not foreign_hashes.needs_rehash(native)
    assert not foreign_hashes.is_weak(native)
    assert foreign_hashes.verify(native, SNOWMAN) and not foreign_hashes.verify(native, WRONG)


def ab64(raw: bytes) -> str:  # passlib's alphabet: '.' for '+', no padding
    return b64(raw).replace("+", ".").rstrip("=")


@pytest.mark.parametrize(
    ("name", "digest"),
    [("pbkdf2", "sha1"), ("pbkdf2-sha256", "sha256"), ("pbkdf2-sha512", "sha512")],
)
def test_pbkdf2_passlib_and_phc(name: str, digest: str) -> None:
    salt = b"\xfb\xff salt"  # '+' and '/' in its base64
    raw = hashlib.pbkdf2_hmac(digest, SNOWMAN.encode(), salt, 1000)
    passlib = f"${name}$1000${ab64(salt)}${ab64(raw)}"
    assert_verifies(passlib)
    phc = f"$pbkdf2-{digest}$i=1000,l={len(raw)}${b64(salt).rstrip('=')}${b64(raw).rstrip('=')}"
    assert custom("pbkdf2", {"value": phc, "encoding": "utf8"}) == phc
    assert_verifies(phc)
    assert not foreign_hashes.is_weak(phc)


def test_django_pbkdf2_sha256() -> None:
    raw = hashlib.pbkdf2_hmac("sha256", SNOWMAN.encode(), b"seasalt2", 1000)
    django = f"pbkdf2_sha256$1000$seasalt2${b64(raw)}"
    assert foreign_hashes.from_string(django) == django
    assert custom("pbkdf2", {"value": django, "encoding": "utf8"}) == django
    assert_verifies(django)


@pytest.mark.parametrize(
    ("scheme", "digest", "salt", "weak"),
    [
        ("SSHA", "sha1", b"\x00salt!", True),
        ("SSHA256", "sha256", b"salt1234", False),
        ("SSHA512", "sha512", b"salt1234", False),
        ("SMD5", "md5", b"abcd", True),
        ("SHA", "sha1", b"", True),
        ("MD5", "md5", b"", True),
    ],
)
def test_ldap(scheme: str, digest: str, salt: bytes, weak: bool) -> None:
    value = f"{{{scheme}}}" + b64(hashlib.new(digest, SNOWMAN.encode() + salt).digest() + salt)
    assert custom("ldap", {"value": value, "encoding": "utf8"}) == value
    assert_verifies(value)
    assert foreign_hashes.is_weak(value) is weak


# --- refusals


def bcrypt_hash() -> str:
    return bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4)).decode()


MD5_HEX = hashlib.md5(b"x").hexdigest()
REFUSED: list[tuple[str, Callable[[], object], str]] = [
    ("not a format", lambda: foreign_hashes.from_string("plaintext-password"), "unsupported_hash"),
    (
        "our own marker",
        lambda: foreign_hashes.from_string("$gh-foreign$md5$$$" + MD5_HEX),
        "unsupported_hash",
    ),
    ("bcrypt truncated", lambda: foreign_hashes.from_string(bcrypt_hash()[:-1]), "invalid_hash"),
    (
        "bcrypt cost 31",
        lambda: foreign_hashes.from_string("$2b$31$" + bcrypt_hash()[7:]),
        "invalid_hash",
    ),
    (
        "argon2 garbage",
        lambda: foreign_hashes.from_string("$argon2id$v=19$m=zz$abc$def"),
        "invalid_hash",
    ),
    (
        "argon2 4 GiB",
        lambda: foreign_hashes.from_string(
            "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$" + "A" * 43
        ),
        "invalid_hash",
    ),
    (
        "pbkdf2 no hash",
        lambda: foreign_hashes.from_string("$pbkdf2-sha256$1000$c2FsdA"),
        "invalid_hash",
    ),
    (
        "pbkdf2 bad digest",
        lambda: foreign_hashes.from_string("$pbkdf2-md5$1000$c2FsdA$" + "A" * 22),
        "unsupported_hash",
    ),
    (
        "pbkdf2 too many rounds",
        lambda: foreign_hashes.from_string("$pbkdf2-sha256$999999999$c2FsdA$" + "A" * 43),
        "invalid_hash",
    ),
    (
        "pbkdf2 bad length",
        lambda: foreign_hashes.from_string("$pbkdf2-sha256$i=10,l=16$c2FsdA$" + "A" * 43),
        "invalid_hash",
    ),
    (
        "django bad rounds",
        lambda: foreign_hashes.from_string("pbkdf2_sha256$many$salt$" + "A" * 44),
        "invalid_hash",
    ),
    ("ldap crypt", lambda: foreign_hashes.from_string("{CRYPT}abcdefgh"), "unsupported_hash"),
    ("ldap short", lambda: foreign_hashes.from_string("{SSHA}" + b64(b"x" * 20)), "invalid_hash"),
    (
        "auth0 password_hash md5",
        lambda: foreign_hashes.from_auth0_user({"password_hash": MD5_HEX}),
        "unsupported_hash",
    ),
    (
        "auth0 both hashes",
        lambda: foreign_hashes.from_auth0_user(
            {"password_hash": bcrypt_hash(), "custom_password_hash": {}}
        ),
        "invalid_hash",
    ),
    (
        "unknown algorithm",
        lambda: custom("crc32", {"value": "00", "encoding": "hex"}),
        "unsupported_hash",
    ),
    ("scrypt", lambda: custom("scrypt", {"value": "00", "encoding": "hex"}), "unsupported_hash"),
    (
        "hash not hex",
        lambda: custom("md5", {"value": "zz" * 16, "encoding": "hex"}),
        "invalid_hash",
    ),
    (
        "hash wrong size",
        lambda: custom("md5", {"value": MD5_HEX[:-2], "encoding": "hex"}),
        "invalid_hash",
    ),
    (
        "digest as utf8",
        lambda: custom("md5", {"value": MD5_HEX, "encoding": "utf8"}),
        "invalid_hash",
    ),
    ("no hash encoding, not base64", lambda: custom("md5", {"value": "*" * 24}), "invalid_hash"),
    (
        "no salt position",
        lambda: custom("md5", {"value": MD5_HEX, "encoding": "hex"}, salt={"value": "s"}),
        "invalid_hash",
    ),
    (
        "bad password encoding",
        lambda: custom(
            "md5", {"value": MD5_HEX, "encoding": "hex"}, password={"encoding": "ebcdic"}
        ),
        "unsupported_hash",
    ),
    (
        "hmac without key",
        lambda: custom("hmac", {"value": MD5_HEX, "encoding": "hex", "digest": "md5"}),
        "invalid_hash",
    ),
    (
        "hmac ripemd160",
        lambda: custom("hmac", {"value": MD5_HEX, "encoding": "hex", "digest": "ripemd160"}),
        "unsupported_hash",
    ),
    (
        "bcrypt with a salt",
        lambda: custom(
            "bcrypt", {"value": bcrypt_hash()}, salt={"value": "s", "position": "prefix"}
        ),
        "invalid_hash",
    ),
    (
        "bcrypt named argon2",
        lambda: custom("argon2", {"value": bcrypt_hash(), "encoding": "utf8"}),
        "invalid_hash",
    ),
    (
        "hash not an object",
        lambda: foreign_hashes.from_custom_password_hash({"algorithm": "md5", "hash": "x"}),
        "invalid_hash",
    ),
    (
        "firebase hash not base64",
        lambda: foreign_hashes.from_firebase(
            "%%%", FIREBASE_SALT, FirebaseHashConfig.from_mapping(FIREBASE)
        ),
        "invalid_hash",
    ),
    (
        "firebase hash short",
        lambda: foreign_hashes.from_firebase(
            b64(b"x" * 32), FIREBASE_SALT, FirebaseHashConfig.from_mapping(FIREBASE)
        ),
        "invalid_hash",
    ),
    (
        "too long for the column",
        lambda: foreign_hashes.from_string("{SSHA512}" + b64(b"x" * 300)),
        "invalid_hash",
    ),
]


@pytest.mark.parametrize(("case", "make", "code"), REFUSED, ids=[case for case, _, _ in REFUSED])
def test_malformed_and_unknown_input_is_refused_without_echoing_it(
    case: str, make: Callable[[], object], code: str
) -> None:
    with pytest.raises(Invalid) as error:
        make()
    assert error.value.code == code
    assert error.value.status == 400
    said = json.dumps([str(error.value), error.value.fields])
    for secret in (MD5_HEX, "plaintext-password", "c2FsdA", "abcdefgh", "$2b$", "$argon2"):
        assert secret not in said, case
    # No chained parser error (whose message may quote the input) rides along into a log.
    assert error.value.__cause__ is None
    assert error.value.__context__ is None or error.value.__suppress_context__


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plaintext",
        "$2b$04$tooshort",
        "{SSHA}!!!",
        "$gh-foreign$md5$p=prefix$$",
        "$pbkdf2$x$y$z",
    ],
)
def test_a_malformed_stored_hash_fails_sign_in_like_a_wrong_password(stored: str) -> None:
    assert security.verify_password(stored, SNOWMAN) is False
    assert security.password_needs_rehash(stored) is True


def test_fast_digests_are_padded_to_an_argon2id_verification() -> None:
    # security.verify_password adds the dummy argon2id check for these (no timing oracle
    # on which accounts still hold an imported digest); slow formats cost enough alone.
    sha = hashlib.sha256(b"salt" + SNOWMAN.encode()).hexdigest()
    salted = {"value": "salt", "position": "prefix"}
    fast = [
        custom("sha256", {"value": sha, "encoding": "hex"}, salt=salted),
        "{SHA}" + b64(hashlib.sha1(SNOWMAN.encode()).digest()),
    ]
    slow = [
        bcrypt_hash(),
        foreign_hashes.from_firebase(
            FIREBASE_HASH, FIREBASE_SALT, FirebaseHashConfig.from_mapping(FIREBASE)
        ),
        "pbkdf2_sha256$1000$salt$" + b64(hashlib.pbkdf2_hmac("sha256", b"x", b"salt", 1000)),
    ]
    fast_or_not = [security.foreign_hash_is_fast(stored) for stored in fast + slow]
    assert fast_or_not == [True] * 2 + [False] * 3
    assert all(security.verify_password(stored, SNOWMAN) for stored in fast)


def test_every_digest_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[int] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(len(a))
        return real(a, b)

    samples = [
        custom(
            "sha256", {"value": hashlib.sha256(SNOWMAN.encode()).hexdigest(), "encoding": "hex"}
        ),
        "pbkdf2_sha256$1000$salt$"
        + b64(hashlib.pbkdf2_hmac("sha256", SNOWMAN.encode(), b"salt", 1000)),
        "{SSHA}" + b64(hashlib.sha1(SNOWMAN.encode() + b"salt").digest() + b"salt"),
        foreign_hashes.from_firebase(
            FIREBASE_HASH, FIREBASE_SALT, FirebaseHashConfig.from_mapping(FIREBASE)
        ),
    ]
    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    for stored in samples:
        foreign_hashes.verify(stored, WRONG)
    assert compared == [32, 32, 20, 64]
