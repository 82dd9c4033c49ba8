"""Every security primitive of the service: password hashing, digests and constant-time
compares, signed tokens (itsdangerous) and authenticated encryption with a key ring.
Imported (foreign) password hashes are verified by the `password_formats` module of this
package (with `md4`, for Auth0's md4 hashes), so every hash the service computes is here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.core.security import password_formats

# OWASP's argon2id floor: m=19 MiB, t=2, p=1.
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
                verified = password_formats.verify(password_hash, password)
                fast = password_formats.is_fast(password_hash)
            except password_formats.FormatError:
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
        return password_formats.scheme(password_hash), password_formats.is_weak(password_hash)
    except password_formats.FormatError:
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
    return _b64encode(digest[: len(digest) // 2])


def pkce_s256(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier: base64url(SHA-256(verifier)), RFC 7636 §4.2."""
    return _b64encode(hashlib.sha256(verifier.encode("ascii")).digest())


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


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def random_hex(nbytes: int = 8) -> str:
    return secrets.token_hex(nbytes)


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


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


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
                key = _b64decode(raw)
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
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, plaintext, associated_data)
        return f"v1.{key_id}.{_b64encode(nonce + sealed)}"

    def decrypt(self, ciphertext: str, associated_data: bytes | None = None) -> bytes:
        try:
            version, key_id, body = ciphertext.split(".", 2)
            raw = _b64decode(body)
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
