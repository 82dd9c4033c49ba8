"""Second factor (TOTP, RFC 6238 with pyotp): enrol, confirm, check a sign-in's code (and
count the failed ones), list, remove.

The secret is encrypted with the key ring and bound to its row; each accepted code's
time-step is remembered, so a code works once (also against two concurrent sign-ins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyotp
from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.audit import service as audit_service
from app.core import security
from app.core.db import add_unique, db, utcnow
from app.core.errors import Conflict, Invalid, NotFound
from app.core.tenancy import Principal
from app.credentials import recovery
from app.credentials.models import MfaEnrolment, Passkey
from app.tenants import service as tenant_service
from app.users import service as user_service
from app.users.models import User

TOTP = "totp"
PENDING, CONFIRMED = "pending", "confirmed"
# Management API provider names that mean the TOTP enrolment ("duo" is never enrolled here).
TOTP_PROVIDERS = frozenset({"google-authenticator"})
# The recovery codes: the provider name that removes them, and how the audit log names them.
RECOVERY_CODE = "recovery-code"
KNOWN_PROVIDERS = TOTP_PROVIDERS | {"duo", RECOVERY_CODE}
VALID_WINDOW = 1  # one time-step either side, for clock drift


@dataclass
class TotpStart:
    """A new (pending) TOTP enrolment; `secret` is shown to the user only here."""

    enrolment: MfaEnrolment
    secret: str
    uri: str


def _associated_data(enrolment: MfaEnrolment) -> bytes:
    # Binds the ciphertext to its row and owner: a secret copied elsewhere does not decrypt.
    return f"mfa:{enrolment.tenant_id}:{enrolment.id}:{enrolment.user_id}".encode()


def _secret(enrolment: MfaEnrolment) -> str:
    return (
        security.keyring().decrypt(enrolment.secret_encrypted, _associated_data(enrolment)).decode()
    )


def totp_secret(enrolment: MfaEnrolment) -> str:
    """The enrolment's base32 secret in clear (only an encrypted operator export asks)."""
    return _secret(enrolment)


def imported_totp_row(*, tenant_id: str, user_id: str, secret: str) -> dict[str, object]:
    """A confirmed TOTP enrolment of an imported user, as a row for a bulk insert: the
    secret encrypted and bound to the row exactly as an enrolment made here is."""
    now = utcnow()
    enrolment = MfaEnrolment(
        id=f"dev_{security.random_hex(12)}", tenant_id=tenant_id, user_id=user_id
    )
    return {
        "id": enrolment.id,
        "tenant_id": tenant_id,
        "user_id": user_id,
        "type": TOTP,
        "status": CONFIRMED,
        "secret_encrypted": security.keyring().encrypt(
            secret.encode(), _associated_data(enrolment)
        ),
        "last_used_step": None,
        "created_at": now,
        "confirmed_at": now,
        "last_auth_at": None,
    }


def find_totp(user: User) -> MfaEnrolment | None:
    """The user's TOTP enrolment (pending or confirmed), or None."""
    return db.session.scalar(
        select(MfaEnrolment).where(MfaEnrolment.user_id == user.id, MfaEnrolment.type == TOTP)
    )


def list_enrolments(user: User) -> list[MfaEnrolment]:
    """Every enrolment of the user, oldest first."""
    return list(
        db.session.scalars(
            select(MfaEnrolment)
            .where(MfaEnrolment.user_id == user.id)
            .order_by(MfaEnrolment.created_at, MfaEnrolment.id)
        )
    )


def start_totp(*, actor: Principal, user: User) -> TotpStart:
    """Start (or restart) a TOTP enrolment with a fresh secret; Conflict when one is
    already confirmed (remove it first), Unauthenticated `reauthentication_required` for
    a user whose sign-in is not recent."""
    user_service.check_recent_sign_in(actor=actor, user=user)
    return _begin_totp(user)


def begin_sign_in_enrolment(user: User) -> TotpStart:
    """At a sign-in that requires a second factor the user lacks (its password was just
    checked): a new pending TOTP enrolment, replacing one left pending."""
    return _begin_totp(user)


def pending_totp(user: User) -> TotpStart | None:
    """The user's pending TOTP enrolment with its secret (to show it again), or None."""
    enrolment = find_totp(user)
    if enrolment is None or enrolment.status != PENDING:
        return None
    return _started(user, enrolment, _secret(enrolment))


def _started(user: User, enrolment: MfaEnrolment, secret: str) -> TotpStart:
    tenant = tenant_service.get_tenant(user.tenant_id)
    label = user.email or user.username or user.id
    uri = pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=tenant.name)
    return TotpStart(enrolment=enrolment, secret=secret, uri=uri)


def _begin_totp(user: User) -> TotpStart:
    current = find_totp(user)
    if current is not None and current.status == CONFIRMED:
        raise Conflict("A TOTP authenticator is already enrolled", code="mfa_already_enrolled")
    if current is not None:
        db.session.delete(current)
        db.session.flush()
    secret = pyotp.random_base32()
    enrolment = MfaEnrolment(
        id=f"dev_{security.random_hex(12)}",
        tenant_id=user.tenant_id,
        user_id=user.id,
        type=TOTP,
        status=PENDING,
        created_at=utcnow(),
    )
    enrolment.secret_encrypted = security.keyring().encrypt(
        secret.encode(), _associated_data(enrolment)
    )
    add_unique(enrolment, Conflict("An enrolment was started concurrently", code="mfa_conflict"))
    return _started(user, enrolment, secret)


def _accept_code(enrolment: MfaEnrolment, code: str, now: datetime) -> bool:
    """Whether `code` is valid now (±1 step) for a time-step later than the last one
    accepted; if so, claim that step atomically (a concurrent use of it then fails)."""
    code = code.strip()
    if not (code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(_secret(enrolment))
    current_step = int(now.timestamp()) // totp.interval
    matched = None
    for step in range(current_step - VALID_WINDOW, current_step + VALID_WINDOW + 1):
        # Compare every candidate (no early exit) so timing says nothing about which matched.
        if security.constant_time_equals(totp.generate_otp(step), code):
            matched = step
    if matched is None:
        return False
    if enrolment.last_used_step is not None and enrolment.last_used_step >= matched:
        # Used already (as the row was read): refused without a write, so the failure the
        # sign-in flow then records in a transaction of its own waits on no lock of ours.
        return False
    claimed = db.session.execute(
        update(MfaEnrolment)
        .where(
            MfaEnrolment.id == enrolment.id,
            or_(MfaEnrolment.last_used_step.is_(None), MfaEnrolment.last_used_step < matched),
        )
        .values(last_used_step=matched, last_auth_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return False
    db.session.refresh(enrolment)
    return True


def confirm_totp(*, actor: Principal, user: User, code: str) -> MfaEnrolment:
    """Confirm the pending TOTP enrolment with a current code (audited `mfa.enrolled`);
    NotFound when none was started, Conflict when already confirmed, Invalid for a wrong
    or already used code, Unauthenticated `reauthentication_required` (see start_totp)."""
    user_service.check_recent_sign_in(actor=actor, user=user)
    enrolment = find_totp(user)
    if enrolment is None:
        raise NotFound("No TOTP enrolment was started", code="mfa_enrolment_not_found")
    if enrolment.status == CONFIRMED:
        raise Conflict("The TOTP authenticator is already confirmed", code="mfa_already_enrolled")
    now = utcnow()
    if not _accept_code(enrolment, code, now):
        raise Invalid(
            "The code is not valid", code="mfa_code_invalid", fields={"code": ["Invalid code."]}
        )
    _mark_confirmed(enrolment, actor_label=actor.label, ip=actor.ip, now=now)
    return enrolment


def confirm_totp_enrolment(*, actor: Principal, user: User, code: str) -> list[str]:
    """confirm_totp, and when the TOTP is the user's first second factor, the ten new
    recovery codes to show once (else [])."""
    first = not second_factor_kinds(user)
    confirm_totp(actor=actor, user=user, code=code)
    return recovery.issue_first(user) if first else []


def confirm_sign_in_enrolment(*, user: User, code: str, ip: str | None) -> list[str]:
    """At a sign-in that enrols TOTP in place: confirm the pending enrolment with a
    current code (audited `mfa.enrolled`) and return the ten new recovery codes to show
    once. Invalid `mfa_code_invalid` for a wrong code, NotFound when none is pending."""
    enrolment = find_totp(user)
    if enrolment is None or enrolment.status != PENDING:
        raise NotFound("No TOTP enrolment was started", code="mfa_enrolment_not_found")
    first = not second_factor_kinds(user)
    now = utcnow()
    if not _accept_code(enrolment, code, now):
        raise Invalid(
            "The code is not valid. Enter the 6-digit code your authenticator app shows now.",
            code="mfa_code_invalid",
            fields={"code": ["Invalid code."]},
        )
    _mark_confirmed(enrolment, actor_label=f"user:{user.id}", ip=ip, now=now)
    return recovery.issue_first(user) if first else []


def _mark_confirmed(
    enrolment: MfaEnrolment, *, actor_label: str, ip: str | None, now: datetime
) -> None:
    enrolment.status = CONFIRMED
    enrolment.confirmed_at = now
    audit_service.record(
        action="mfa.enrolled",
        actor=actor_label,
        user_id=enrolment.user_id,
        target=enrolment.id,
        ip=ip,
        data={"type": enrolment.type},
    )
    db.session.flush()


def second_factors(user: User) -> list[str]:
    """The user's confirmed second factors as a mail to the user names them."""
    enrolment = find_totp(user)
    return ["an authenticator app"] if enrolment and enrolment.status == CONFIRMED else []


def second_factor_kinds(user: User) -> list[str]:
    """The user's second factors: "totp" (a confirmed TOTP enrolment) and "passkey" (any
    passkey), in that order."""
    kinds = []
    enrolment = find_totp(user)
    if enrolment is not None and enrolment.status == CONFIRMED:
        kinds.append(TOTP)
    if db.session.scalar(select(Passkey.id).where(Passkey.user_id == user.id).limit(1)):
        kinds.append("passkey")
    return kinds


def forget_recovery_codes_if_no_factor(user: User) -> None:
    """After a second factor was removed: the recovery codes go with the last one."""
    if not second_factor_kinds(user):
        recovery.forget(user)


def remove_recovery_codes(*, actor: Principal, user: User) -> int:
    """Delete every recovery code of the user (an administrator's reset of a user who
    lost them), audited `mfa.removed` with provider `recovery-code`; how many there were
    (0: nothing audited). Unauthenticated `reauthentication_required` for a user whose
    sign-in is not recent."""
    user_service.check_recent_sign_in(actor=actor, user=user)
    removed = recovery.forget(user)
    if removed:
        audit_service.record(
            action="mfa.removed",
            actor=actor.label,
            user_id=user.id,
            ip=actor.ip,
            data={"provider": RECOVERY_CODE, "codes": removed},
        )
    return removed


def regenerate_recovery_codes(*, actor: Principal, user: User) -> list[str]:
    """Ten new recovery codes instead of all the user's current ones (audited
    `mfa.recovery_codes_regenerated`). Invalid `mfa_not_enrolled` for a user without a
    second factor; Unauthenticated `reauthentication_required` (see start_totp)."""
    user_service.check_recent_sign_in(actor=actor, user=user)
    if not second_factor_kinds(user):
        raise Invalid(
            "Turn on two-step verification first: recovery codes go with it.",
            code="mfa_not_enrolled",
        )
    return recovery.regenerate(user=user, actor_label=actor.label, ip=actor.ip)


def sign_in_needs_otp(user: User) -> bool:
    """Whether a password sign-in of `user` must carry a code: a confirmed TOTP, or a
    started one when the user must use two factors."""
    enrolment = find_totp(user)
    return needs_otp(user, enrolment.status if enrolment is not None else None)


def needs_otp(user: User, totp_status: str | None) -> bool:
    """The rule of sign_in_needs_otp, given the status of the user's TOTP enrolment (None
    for none) as a read that already holds it found it (app.signin.lookup)."""
    if totp_status is None:
        return False
    return totp_status == CONFIRMED or bool(user.require_twofactor_auth)


def accept_sign_in_code(*, user: User, code: str, ip: str | None) -> bool:
    """Whether `code` is a valid, unused code of the user's TOTP enrolment; its time-step
    is then claimed, and a code that proves a started enrolment confirms it. Neither
    audits nor raises: the sign-in flow (app.signin) counts and records failures."""
    enrolment = find_totp(user)
    if enrolment is None:
        return False
    now = utcnow()
    if not _accept_code(enrolment, code, now):
        return False
    if enrolment.status != CONFIRMED:
        _mark_confirmed(enrolment, actor_label=f"user:{user.id}", ip=ip, now=now)
    return True


def count_failed_code(session: Session, user: User) -> None:
    """Count one failed code against the user, in `session` (a transaction of its own:
    the count must outlive the failing request). No edit of the user: its version and
    updated_at stay."""
    table = User.__table__
    session.execute(
        update(table)
        .where(table.c.tenant_id == user.tenant_id, table.c.id == user.id)
        .values(
            second_factor_failures=table.c.second_factor_failures + 1,
            updated_at=table.c.updated_at,
        )
    )


def clear_failed_codes(user: User) -> int:
    """At a successful sign-in: how many codes failed since the last one (as the row was
    read), and that many are taken off the count (failures counted meanwhile stay for
    the next sign-in to show)."""
    seen = user.second_factor_failures or 0
    if seen:
        table = User.__table__
        remaining = case(
            (table.c.second_factor_failures > seen, table.c.second_factor_failures - seen), else_=0
        )
        db.session.connection().execute(
            update(table)
            .where(table.c.tenant_id == user.tenant_id, table.c.id == user.id)
            .values(second_factor_failures=remaining, updated_at=table.c.updated_at)
        )
        set_committed_value(user, "second_factor_failures", 0)
    return seen


def remove(*, actor: Principal, user: User, provider: str) -> bool:
    """Remove the user's enrolment for a Management API provider name (audited
    `mfa.removed`): `google-authenticator` is the TOTP enrolment, `recovery-code` every
    recovery code; False when nothing was enrolled. Invalid for an unknown provider,
    Unauthenticated `reauthentication_required` for a user whose sign-in is not recent."""
    if provider not in KNOWN_PROVIDERS:
        raise Invalid(
            f"provider must be one of {', '.join(sorted(KNOWN_PROVIDERS))}",
            code="invalid_mfa_provider",
        )
    if provider == RECOVERY_CODE:
        return remove_recovery_codes(actor=actor, user=user) > 0
    user_service.check_recent_sign_in(actor=actor, user=user)
    if provider not in TOTP_PROVIDERS:
        return False
    enrolment = find_totp(user)
    if enrolment is None:
        return False
    db.session.delete(enrolment)
    audit_service.record(
        action="mfa.removed",
        actor=actor.label,
        user_id=user.id,
        target=enrolment.id,
        ip=actor.ip,
        data={"provider": provider},
    )
    db.session.flush()
    forget_recovery_codes_if_no_factor(user)
    return True
