"""Recovery codes: ten single-use codes a user gets when a first second factor is enrolled
(and again, all replaced, when asked), to sign in when the authenticator is lost.

A code is 10 characters of base32 (50 random bits) shown as `xxxxx-xxxxx`; input is read
without regard to case, dashes or spaces. Only an HMAC-SHA256 of each is stored, keyed
with a key derived from SECRET_KEY and bound to the tenant and user: a stolen table
alone cannot be brute-forced offline (50 bits is within reach of a plain SHA-256
search), and a row copied to another user does not match. Rotating SECRET_KEY therefore
voids the codes (users regenerate them from the account page).

Using a code is one `UPDATE … WHERE used_at IS NULL` that must touch one row, so two
concurrent uses of one code give one success. The sign-in flow (app.signin.flow) counts a
wrong code against the account's second-factor budget, as a wrong TOTP code."""

from __future__ import annotations

import re

from flask import current_app
from sqlalchemy import delete, func, select, update

from app.audit import service as audit_service
from app.core import security
from app.core.db import db, utcnow
from app.credentials.models import RecoveryCode
from app.users.models import User

CODE_COUNT = 10
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lower case (easier to read)
_LENGTH = 10
_SHAPE = re.compile(r"[a-z2-7]{10}")


def normalize(code: str) -> str | None:
    """The 10 characters of a code as typed (any case, dashes and spaces ignored), or
    None when it cannot be a recovery code."""
    cleaned = re.sub(r"[\s-]", "", code or "").lower()
    return cleaned if _SHAPE.fullmatch(cleaned) else None


def looks_like_code(code: str) -> bool:
    return normalize(code) is not None


def _digest(user: User, normalized: str) -> str:
    return security.keyed_digest(
        str(current_app.config["SECRET_KEY"]),
        "recovery-code",
        f"{user.tenant_id}:{user.id}:{normalized}",
    ).hex()


def _new_code() -> str:
    raw = security.random_string(_ALPHABET, _LENGTH)
    return f"{raw[:5]}-{raw[5:]}"


def _replace(user: User) -> list[str]:
    db.session.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.user_id == user.id)
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    codes: list[str] = []
    while len(codes) < CODE_COUNT:
        code = _new_code()
        if code not in codes:
            codes.append(code)
    for code in codes:
        db.session.add(
            RecoveryCode(
                id=f"rc_{security.random_hex(12)}",
                tenant_id=user.tenant_id,
                user_id=user.id,
                code_hash=_digest(user, normalize(code) or ""),
                created_at=now,
                used_at=None,
            )
        )
    db.session.flush()
    return codes


def issue_first(user: User) -> list[str]:
    """At the enrolment of a second factor: ten new codes, replacing any left over (the
    codes are shown to the user only now). Audited with the enrolment (`mfa.enrolled`)."""
    return _replace(user)


def regenerate(*, user: User, actor_label: str, ip: str | None) -> list[str]:
    """Ten new codes instead of every current one (audited
    `mfa.recovery_codes_regenerated`); shown to the user only now."""
    codes = _replace(user)
    audit_service.record(
        action="mfa.recovery_codes_regenerated",
        actor=actor_label,
        user_id=user.id,
        ip=ip,
        data={"count": len(codes)},
    )
    return codes


def remaining(user: User) -> int:
    """How many unused codes the user has."""
    return int(
        db.session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def use(*, user: User, code: str, ip: str | None) -> int | None:
    """Spend one code: the number of codes left when `code` was an unused code of the
    user (audited `mfa.recovery_code_used`), else None. Neither raises nor counts a
    failure: the sign-in flow does."""
    normalized = normalize(code)
    if normalized is None:
        return None
    claimed = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _digest(user, normalized),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return None
    left = remaining(user)
    audit_service.record(
        action="mfa.recovery_code_used",
        actor=f"user:{user.id}",
        user_id=user.id,
        ip=ip,
        data={"remaining": left},
    )
    return left


def forget(user: User) -> int:
    """Delete every recovery code of the user (when its last second factor was removed);
    how many there were."""
    result = db.session.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.user_id == user.id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)
