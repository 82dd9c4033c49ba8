"""RS256 signing keys: creation, rotation, the JWKS document, signing and verifying JWTs.

Keys live in the database (private halves encrypted with the key ring) so every API
process signs with the same current key; each process caches them, and caches verified
claims per token until the token expires, so a hot path does no RSA work twice.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import current_app
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import or_, select

from app.core import security
from app.core.db import db, utcnow
from app.core.errors import Unauthenticated
from app.tokens.models import SigningKey

ALGORITHM = "RS256"
CURRENT_KEY_CACHE_SECONDS = 60
UNKNOWN_KID_RETRY_SECONDS = 5
# Verified claims kept per process, least recently used dropped first: a claims dict costs
# about 1.7 KB, so this bounds the cache near 4 MB (10 000 tokens kept as keys cost ~30 MB
# and grew a worker's memory by a fifth while it filled).
VERIFIED_CACHE_SIZE = 2048
# Misses remembered per process: bounded, so a flood of made-up kids costs no memory.
UNKNOWN_KID_CACHE_SIZE = 256
# Our kids are random_hex(8); anything else is refused before any look-up.
KID_PATTERN = re.compile(r"[0-9a-f]{16}")


@dataclass
class _KeyCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    current: tuple[str, Any, float] | None = None  # kid, private key, loaded at
    private: dict[str, Any] = field(default_factory=dict)  # kid -> parsed private key
    public: dict[str, tuple[Any, float | None]] = field(default_factory=dict)  # kid -> key, exp
    unknown: OrderedDict[str, float] = field(default_factory=OrderedDict)  # kid -> last miss
    # sha256(token) -> claims, least recently used first
    verified: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)


def _cache() -> _KeyCache:
    cache = current_app.extensions.get("gatehouse.signing")
    if cache is None:
        cache = current_app.extensions["gatehouse.signing"] = _KeyCache()
    return cache


def _associated_data(kid: str) -> bytes:
    return f"signing-key:{kid}".encode()


def create_signing_key() -> SigningKey:
    """Generate a new RS256 key pair and store it (private half encrypted)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = security.random_hex(8)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    key = SigningKey(
        kid=kid,
        private_key_encrypted=security.keyring().encrypt(pem, _associated_data(kid)),
        public_jwk=jwk,
        created_at=utcnow(),
    )
    db.session.add(key)
    db.session.flush()
    return key


def max_token_lifetime() -> int:
    """The longest an access or ID token can live (tenants may raise it up to a day)."""
    return max(current_app.config["ACCESS_TOKEN_TTL"], 24 * 3600)


def rotate_signing_key() -> SigningKey:
    """Make a new current key; older keys stop signing but verify until their tokens expire."""
    now = utcnow()
    # Other processes go on signing with the old key until their cache of the current key
    # runs out, so it must verify that much longer than the longest token lives.
    keep_until = now + timedelta(seconds=max_token_lifetime() + CURRENT_KEY_CACHE_SECONDS)
    for old in db.session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        old.retired_at = now
        old.expires_at = keep_until
    key = create_signing_key()
    cache = _cache()
    with cache.lock:
        cache.current = None
    return key


def _load_private(key: SigningKey) -> Any:
    pem = security.keyring().decrypt(key.private_key_encrypted, _associated_data(key.kid))
    return serialization.load_pem_private_key(pem, password=None)


def _current_key() -> tuple[str, Any]:
    cache = _cache()
    with cache.lock:
        if cache.current and time.monotonic() - cache.current[2] < CURRENT_KEY_CACHE_SECONDS:
            return cache.current[0], cache.current[1]
    # Which key is current is re-read every CURRENT_KEY_CACHE_SECONDS (a rotation by
    # another process shows up then); the key itself is decrypted and parsed once per kid.
    kid = db.session.scalar(
        select(SigningKey.kid)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc())
        .limit(1)
    )
    with cache.lock:
        private = cache.private.get(kid) if kid is not None else None
    if private is None:
        key = db.session.get(SigningKey, kid) if kid is not None else None
        if key is None:
            key = create_signing_key()
        kid, private = key.kid, _load_private(key)
    with cache.lock:
        cache.private = {kid: private}  # only the current one is ever needed again
        cache.current = (kid, private, time.monotonic())
        cache.public[kid] = (private.public_key(), None)
    return kid, private


def sign(claims: dict[str, Any]) -> str:
    """Sign `claims` with the current key; the header names it by `kid`."""
    kid, private = _current_key()
    return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid})


def _public_key(kid: str) -> Any:
    cache = _cache()
    now = time.time()
    with cache.lock:
        known = cache.public.get(kid)
        if known and (known[1] is None or known[1] > now):
            return known[0]
        if now - cache.unknown.get(kid, 0.0) < UNKNOWN_KID_RETRY_SECONDS:
            return None
    row = db.session.get(SigningKey, kid)
    if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
        with cache.lock:
            cache.unknown[kid] = now
            cache.unknown.move_to_end(kid)
            while len(cache.unknown) > UNKNOWN_KID_CACHE_SIZE:
                cache.unknown.popitem(last=False)
        return None
    public = RSAAlgorithm.from_jwk(row.public_jwk)
    expires = row.expires_at.timestamp() if row.expires_at else None
    with cache.lock:
        cache.public[kid] = (public, expires)
    return public


def invalid_token(message: str = "The access token is not valid") -> Unauthenticated:
    # The surface's error handling turns the error into the RFC 6750 challenge.
    return Unauthenticated(message, code="invalid_token", error="invalid_token")


def _verification_key(token: str) -> Any:
    """The public key of the live signing key a JWT's header names; invalid_token."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise invalid_token() from exc
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise invalid_token()
    key = _public_key(kid)
    if key is None:
        raise invalid_token()
    return key


def _decode(token: str, *, require: list[str], verify_exp: bool = True) -> dict[str, Any]:
    """The claims of a JWT with our issuer, signed by the live key its header names; the
    audience is the caller's to check (PyJWT errors, or invalid_token for the key)."""
    return jwt.decode(
        token,
        _verification_key(token),
        algorithms=[ALGORITHM],
        issuer=current_app.config["ISSUER"],
        options={"require": require, "verify_aud": False, "verify_exp": verify_exp},
    )


def verify(token: str) -> dict[str, Any]:
    """The claims of a JWT signed by one of our live keys; raises invalid_token."""
    cache = _cache()
    digest = security.sha256_hex(token)
    with cache.lock:
        cached = cache.verified.get(digest)
        if cached is not None:
            cache.verified.move_to_end(digest)
    if cached is not None:
        if cached["exp"] > time.time():
            return cached
        with cache.lock:  # expired: dropped now rather than when the LRU reaches it
            cache.verified.pop(digest, None)
    try:
        claims = _decode(token, require=["exp", "iat", "sub", "iss", "aud", "tid"])
    except jwt.ExpiredSignatureError as exc:
        raise invalid_token("The access token has expired") from exc
    except jwt.PyJWTError as exc:
        raise invalid_token() from exc
    if claims.get("aud") != claims.get("tid"):
        raise invalid_token()
    with cache.lock:
        cache.verified[digest] = claims
        while len(cache.verified) > VERIFIED_CACHE_SIZE:
            cache.verified.popitem(last=False)
    return claims


def verify_id_token(token: str) -> dict[str, Any]:
    """The claims of an unexpired ID token we issued, whatever its audience (the tenant, or
    a registered application's client_id: the caller checks it); invalid_token otherwise."""
    try:
        claims = _decode(token, require=["exp", "iat", "sub", "iss", "aud", "tid"])
    except jwt.PyJWTError as exc:
        raise invalid_token("The ID token is not valid") from exc
    if "scope" in claims:  # an access token verifies too: only an ID token proves a user
        raise invalid_token("An access token is not an ID token")
    return claims


def verify_id_token_hint(token: str) -> dict[str, Any]:
    """The claims of an ID token we issued, even an expired one (OIDC RP-Initiated Logout
    §2 lets a logout hint be expired); invalid_token for anything else."""
    try:
        claims = _decode(token, require=["sub", "iss", "aud", "tid"], verify_exp=False)
    except jwt.PyJWTError as exc:
        raise invalid_token("The ID token is not valid") from exc
    if "scope" in claims:
        raise invalid_token("An access token is not an ID token")
    return claims


def jwks() -> dict[str, Any]:
    """The public keys that still verify tokens: the current one and recent predecessors."""
    _current_key()  # a fresh deployment gets its first key here rather than serving none
    now = utcnow()
    keys = db.session.scalars(
        select(SigningKey)
        .where(or_(SigningKey.expires_at.is_(None), SigningKey.expires_at > now))
        .order_by(SigningKey.created_at.desc())
    )
    return {"keys": [key.public_jwk for key in keys]}
