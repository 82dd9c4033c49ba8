"""Auth0 bulk-import users holding a password hash of every algorithm Auth0 lists, made with
the reference libraries (hashlib, hmac, bcrypt, argon2-cffi; MD4 by app.core.security, which
tests/domain/test_foreign_hashes.py proves against RFC 1320), never by the code under test.
Between them they use salt prefix and suffix, and hex, base64 and utf8 encodings."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import bcrypt
from argon2 import PasswordHasher, Type

from app.core.security import MD4


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def custom(algorithm: str, hash_: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Auth0's `custom_password_hash` object."""
    return {"algorithm": algorithm, "hash": hash_, **extra}


def _bcrypt(password: str, prefix: bytes) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4, prefix=prefix)).decode()


def _argon2id(password: str) -> str:
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
    return hasher.hash(password)


def _pbkdf2_phc(password: str) -> str:
    salt = b"\xfb\xff pbkdf2 salt"
    raw = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000, 32)
    return f"$pbkdf2-sha256$i=1000,l=32${b64(salt).rstrip('=')}${b64(raw).rstrip('=')}"


def _ldap(scheme: str, digest: str, password: str) -> str:
    salt = b"\x00ldap-salt"
    return f"{{{scheme}}}" + b64(hashlib.new(digest, password.encode() + salt).digest() + salt)


def _hmac(password: str) -> dict[str, Any]:
    key, salt = b"server-side pepper", "hmac-salt"
    mac = hmac.new(key, salt.encode() + password.encode(), "sha256").digest()
    return custom(
        "hmac",
        {
            "value": b64(mac),
            "encoding": "base64",
            "digest": "sha256",
            "key": {"value": b64(key), "encoding": "base64"},
        },
        salt={"value": salt, "encoding": "utf8", "position": "prefix"},
    )


def _md4(password: str) -> dict[str, Any]:
    salt = "md4-salt"
    value = MD4(password.encode() + salt.encode()).hexdigest()
    return custom(
        "md4",
        {"value": value, "encoding": "hex"},
        salt={"value": salt, "encoding": "utf8", "position": "suffix"},
    )


def _md5(password: str) -> dict[str, Any]:
    salt = b"\x01\x02md5"
    value = b64(hashlib.md5(salt + password.encode()).digest())
    return custom(
        "md5",
        {"value": value, "encoding": "base64"},
        salt={"value": b64(salt), "encoding": "base64", "position": "prefix"},
    )


def _sha1(password: str) -> dict[str, Any]:
    salt = b"\xffsha1"
    value = hashlib.sha1(password.encode() + salt).hexdigest()
    return custom(
        "sha1",
        {"value": value, "encoding": "hex"},
        salt={"value": salt.hex(), "encoding": "hex", "position": "suffix"},
    )


def _sha256(password: str) -> dict[str, Any]:
    salt = "sha256-salt"
    value = b64(hashlib.sha256(salt.encode() + password.encode()).digest())
    return custom(
        "sha256",
        {"value": value, "encoding": "base64"},
        salt={"value": salt, "encoding": "utf8", "position": "prefix"},
    )


def _sha512(password: str) -> dict[str, Any]:
    value = hashlib.sha512(password.encode()).hexdigest().upper()  # both cases are hex
    return custom("sha512", {"value": value, "encoding": "hex"})


# name → (the user's hash properties for `password`)
ALGORITHMS: dict[str, Callable[[str], dict[str, Any]]] = {
    "bcrypt-2b": lambda p: {"password_hash": _bcrypt(p, b"2b")},
    "bcrypt-2a": lambda p: {"password_hash": _bcrypt(p, b"2a")},
    "argon2": lambda p: {
        "custom_password_hash": custom("argon2", {"value": _argon2id(p), "encoding": "utf8"})
    },
    "bcrypt": lambda p: {
        "custom_password_hash": custom("bcrypt", {"value": _bcrypt(p, b"2b"), "encoding": "utf8"})
    },
    "pbkdf2": lambda p: {
        "custom_password_hash": custom("pbkdf2", {"value": _pbkdf2_phc(p), "encoding": "utf8"})
    },
    "hmac": lambda p: {"custom_password_hash": _hmac(p)},
    "ldap-ssha": lambda p: {
        "custom_password_hash": custom("ldap", {"value": _ldap("SSHA", "sha1", p)})
    },
    "ldap-ssha256": lambda p: {
        "custom_password_hash": custom("ldap", {"value": _ldap("SSHA256", "sha256", p)})
    },
    "ldap-ssha512": lambda p: {
        "custom_password_hash": custom("ldap", {"value": _ldap("SSHA512", "sha512", p)})
    },
    "md4": lambda p: {"custom_password_hash": _md4(p)},
    "md5": lambda p: {"custom_password_hash": _md5(p)},
    "sha1": lambda p: {"custom_password_hash": _sha1(p)},
    "sha256": lambda p: {"custom_password_hash": _sha256(p)},
    "sha512": lambda p: {"custom_password_hash": _sha512(p)},
}


def auth0_users(password: str) -> list[dict[str, Any]]:
    """One Auth0 bulk-import user per algorithm, named after it (`u-md5`, u-md5@example.com),
    all with `password`."""
    return [
        {
            "email": f"u-{name}@example.com",
            "email_verified": True,
            "username": f"u-{name}",
            "given_name": name,
            **build(password),
        }
        for name, build in ALGORITHMS.items()
    ]
