"""The upgrade of an imported hash at sign-in (issue 24), below the surfaces: what the audit
names as the former scheme for every format (fixed words, never a piece of the hash), that
an upgrade which finds the row already rewritten leaves it alone (the losing one of two
concurrent first sign-ins), that audit data refuses a hash, and that no log line keeps one.
Hashes come from the reference libraries (bcrypt, hashlib, argon2-cffi)."""

from __future__ import annotations

import base64
import hashlib
import logging
from urllib.parse import quote

import bcrypt
import pytest
from argon2 import PasswordHasher, Type
from flask import Flask
from sqlalchemy import select, update

from app.audit import service as audit_service
from app.audit.models import AuditEvent
from app.core import security
from app.core.db import db, independent_write
from app.core.redact import REDACTED, RedactingFilter, redact_text
from app.core.tenancy import tenant_scope
from app.credentials import foreign_hashes
from app.users import passwords
from app.users import service as user_service
from app.users.models import User
from tests import factories
from tests.factories import PASSWORD, TenantHandle


def _bcrypt() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def _digest(algorithm: str, salted: bool = True, hmac_key: str | None = None) -> str:
    salt = b"salt" if salted else b""
    raw = hashlib.new(algorithm, salt + PASSWORD.encode()).hexdigest()
    custom: dict = {"algorithm": algorithm, "hash": {"value": raw, "encoding": "hex"}}
    if hmac_key is not None:
        import hmac

        raw = hmac.new(hmac_key.encode(), salt + PASSWORD.encode(), algorithm).hexdigest()
        custom = {
            "algorithm": "hmac",
            "hash": {
                "value": raw,
                "encoding": "hex",
                "digest": algorithm,
                "key": {"value": hmac_key, "encoding": "utf8"},
            },
        }
    if salted:
        custom["salt"] = {"value": "salt", "encoding": "utf8", "position": "prefix"}
    return foreign_hashes.from_custom_password_hash(custom)


def _pbkdf2_phc() -> str:
    raw = hashlib.pbkdf2_hmac("sha512", PASSWORD.encode(), b"0123456789abcdef", 1000)
    salt = base64.b64encode(b"0123456789abcdef").decode().rstrip("=")
    return f"$pbkdf2-sha512$i=1000,l=64${salt}${base64.b64encode(raw).decode().rstrip('=')}"


def _ldap(scheme: str, algorithm: str, salt: bytes) -> str:
    raw = hashlib.new(algorithm, PASSWORD.encode() + salt).digest() + salt
    return "{" + scheme + "}" + base64.b64encode(raw).decode()


CASES = [  # (stored, scheme, weak)
    (_bcrypt(), "bcrypt", False),
    (PasswordHasher(type=Type.I, memory_cost=1024).hash(PASSWORD), "argon2i", False),
    (_pbkdf2_phc(), "pbkdf2-sha512", False),
    (
        "pbkdf2_sha256$1000$djangosalt$"
        + base64.b64encode(
            hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), b"djangosalt", 1000)
        ).decode(),
        "django-pbkdf2_sha256",
        False,
    ),
    (_ldap("SSHA512", "sha512", b"pepper"), "ldap-ssha512", False),
    (_ldap("SHA", "sha1", b""), "ldap-sha", True),
    (_digest("md5"), "md5", True),
    (_digest("sha512"), "sha512", False),
    (_digest("sha256", salted=False), "sha256", True),
    (_digest("sha256", hmac_key="pepper"), "hmac-sha256", False),
    (_digest("sha1", hmac_key="pepper"), "hmac-sha1", True),
]


@pytest.mark.parametrize(("stored", "scheme", "weak"), CASES, ids=[c[1] for c in CASES])
def test_the_audit_names_each_format_without_the_hash(stored: str, scheme: str, weak: bool) -> None:
    assert security.verify_password(stored, PASSWORD)
    assert security.password_needs_rehash(stored)
    assert security.foreign_hash_origin(stored) == (scheme, weak)
    assert foreign_hashes.is_weak(stored) is weak
    assert security.foreign_hash_scheme(stored) == scheme


def test_our_own_and_malformed_hashes_have_no_origin() -> None:
    assert security.foreign_hash_origin(security.hash_password(PASSWORD)) is None
    assert security.foreign_hash_origin("$2b$10$short") is None
    assert security.foreign_hash_origin("not a hash at all") is None


@pytest.mark.parametrize(("stored", "scheme", "weak"), CASES, ids=[c[1] for c in CASES])
def test_no_log_line_keeps_a_hash(stored: str, scheme: str, weak: bool) -> None:
    for text in (
        f"user row {stored} loaded",
        f'{{"password_hash": "{stored}", "id": "u1"}}',
        f"POST /x?password_hash={stored}&next=1",
        f"GET /x?seen={quote(stored, safe='')}&next=1",
    ):
        cleaned = redact_text(text)
        assert stored not in cleaned and REDACTED in cleaned, cleaned
    native = security.hash_password(PASSWORD)
    assert native not in redact_text(f"hash={native}")
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "imported %s", (stored,), None)
    RedactingFilter().filter(record)
    assert stored not in record.getMessage()


def test_parameters_named_for_a_hash_are_redacted() -> None:
    text = "GET /u?passwordHash=abc&custom_password_hash=def&password_hash=ghi&page=2"
    assert redact_text(text) == (
        f"GET /u?passwordHash={REDACTED}&custom_password_hash={REDACTED}"
        f"&password_hash={REDACTED}&page=2"
    )
    assert redact_text("costs $5, {x} and $2 more") == "costs $5, {x} and $2 more"


def test_audit_data_refuses_a_hash(app: Flask, tenant: TenantHandle) -> None:
    with app.app_context(), tenant_scope(tenant.id):
        for key in ("password_hash", "hash"):
            with pytest.raises(ValueError):
                audit_service.record(action="user.password_rehashed", actor="x", data={key: "h"})
        db.session.rollback()


def test_an_upgrade_that_finds_the_row_rewritten_leaves_it(
    app: Flask, tenant: TenantHandle
) -> None:
    user_id = factories.make_user(app, tenant.id, user_id="racer", username="racer")
    stored = _bcrypt()
    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user(user_id)
        user.password_hash, user.password_tag = stored, None
        db.session.commit()

    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user(user_id)  # read with the bcrypt hash
        assert user.password_hash == stored
        winner = security.hash_password(PASSWORD)
        with independent_write() as session:  # another sign-in's upgrade, committed first
            session.execute(
                update(User.__table__)
                .where(User.__table__.c.id == user_id)
                .values(password_hash=winner, version=User.__table__.c.version + 1)
            )
        passwords.keep_current(user, PASSWORD, ip="192.0.2.1")
        assert user.password_hash == winner  # read afresh, not overwritten
        db.session.commit()
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.password_rehashed")
        ).all()
        assert events == []

    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user(user_id)
        assert user.password_hash == winner
        # The next sign-in finds nothing to upgrade, and stores the missing tag only.
        version = user.version
        passwords.keep_current(user, PASSWORD)
        db.session.commit()
        assert user.password_hash == winner and user.version == version
        assert user.password_tag == passwords.tag_of(user, PASSWORD)


def test_an_upgrade_is_audited_in_the_sign_ins_transaction(
    app: Flask, tenant: TenantHandle
) -> None:
    user_id = factories.make_user(app, tenant.id, user_id="solo", username="solo")
    stored = _digest("md5")
    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user(user_id)
        user.password_hash, user.password_tag = stored, None
        db.session.commit()

    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user(user_id)
        passwords.keep_current(user, PASSWORD, ip="192.0.2.7")
        db.session.rollback()  # the sign-in failed later: neither the hash nor the event stays
    with app.app_context(), tenant_scope(tenant.id):
        assert user_service.get_user(user_id).password_hash == stored
        assert db.session.scalars(select(AuditEvent)).all() == []
        user = user_service.get_user(user_id)
        passwords.keep_current(user, PASSWORD, ip="192.0.2.7")
        db.session.commit()
        [event] = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.password_rehashed")
        ).all()
        assert (event.user_id, event.ip, event.data) == (
            user_id,
            "192.0.2.7",
            {"from": "md5", "weak": True},
        )
        assert user_service.get_user(user_id).password_hash.startswith("$argon2id$")
