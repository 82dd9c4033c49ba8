"""Passkeys (WebAuthn, with py_webauthn): the registration and authentication ceremonies,
and a user's list of passkeys.

The relying party is WEBAUTHN_RP_ID and the accepted origins WEBAUTHN_ORIGINS (by default
the issuer's host and origin). Every ceremony requires user verification; registration
requires a discoverable (resident) credential, so the passkey can sign in without a
username. The user handle is a keyed digest of tenant and user (stable, opaque: no email
or id leaves). The caller keeps each ceremony's challenge (sealed, single use, bound to
the browser) and hands it back to the verification.

The signature counter: an authenticator that counts (stored or new count non-zero) must
show a count above the stored one; otherwise the credential was cloned and the assertion
is refused (`PasskeyRefused` reason "cloned"). The count is claimed by one conditional
update, so two concurrent uses of one count cannot both pass."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import and_, func, or_, select, update
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.audit import service as audit_service
from app.core import security
from app.core.db import add_unique, db, utcnow
from app.core.errors import Conflict, Invalid, InvalidGrant, NotFound
from app.credentials.models import Passkey
from app.tenants import service as tenant_service
from app.users import service as user_service
from app.users.models import User

SINGLE_DEVICE, MULTI_DEVICE = "single_device", "multi_device"
# RFC 8176: a hardware-bound key (security key, platform authenticator) or a synced one;
# user verification is required, so a passkey alone is two factors ("mfa").
AMR_BY_DEVICE_TYPE = {SINGLE_DEVICE: "hwk", MULTI_DEVICE: "swk"}
TIMEOUT_MS = 5 * 60 * 1000
MAX_PASSKEYS = 20
_TRANSPORTS = {t.value for t in AuthenticatorTransport}


@dataclass(frozen=True)
class Ceremony:
    """Options for `navigator.credentials.create()`/`.get()` (JSON), and their challenge
    (base64url), which the caller keeps for the verification."""

    options_json: str
    challenge: str


@dataclass(frozen=True)
class Assertion:
    """A verified passkey assertion: whose, which passkey, and the `amr` it proves."""

    user: User
    passkey: Passkey
    amr: list[str]


class PasskeyRefused(InvalidGrant):
    """An assertion that does not sign in; `reason` and `user` (when known) are for the
    sign-in flow's audit."""

    def __init__(self, reason: str, user: User | None = None, passkey_id: str | None = None):
        message = (
            "This passkey was refused: its signature counter went back, so it may have been "
            "copied. Sign in another way and remove it."
            if reason == "cloned"
            else "The passkey could not be verified. Try again, or sign in another way."
        )
        super().__init__(
            message, code="passkey_cloned" if reason == "cloned" else "passkey_invalid"
        )
        self.reason = reason
        self.user = user
        self.passkey_id = passkey_id


def _rp_id() -> str:
    return str(current_app.config["WEBAUTHN_RP_ID"])


def _origins() -> list[str]:
    return list(current_app.config["WEBAUTHN_ORIGINS"])


def user_handle(user: User) -> bytes:
    """The WebAuthn user handle of `user`: 32 opaque bytes, stable across ceremonies."""
    secret = str(current_app.config["SECRET_KEY"])
    return security.keyed_digest(secret, "passkey-user-handle", f"{user.tenant_id}:{user.id}")


def relying_party_name(tenant_id: str) -> str:
    tenant = tenant_service.get_tenant(tenant_id)
    return str((tenant.branding or {}).get("display_name") or tenant.name)


def list_passkeys(user: User) -> list[Passkey]:
    """The user's passkeys, oldest first."""
    return list(
        db.session.scalars(
            select(Passkey)
            .where(Passkey.user_id == user.id)
            .order_by(Passkey.created_at, Passkey.id)
        )
    )


def has_passkeys(user: User) -> bool:
    count = db.session.scalar(
        select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)
    )
    return bool(count)


def _descriptors(passkeys: list[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(p.credential_id),
            transports=[AuthenticatorTransport(t) for t in p.transports or [] if t in _TRANSPORTS],
        )
        for p in passkeys
    ]


def registration_options(*, user: User) -> Ceremony:
    """Options to create a passkey for `user` (discoverable, user verification required,
    none of the user's existing credentials again)."""
    label = user.email or user.username or user.id
    options = generate_registration_options(
        rp_id=_rp_id(),
        rp_name=relying_party_name(user.tenant_id),
        user_id=user_handle(user),
        user_name=label,
        user_display_name=user.display_name or label,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(list_passkeys(user)),
    )
    return Ceremony(options_to_json(options), bytes_to_base64url(options.challenge))


def register(
    *, user: User, credential: str, challenge: str, name: str | None, actor: str, ip: str | None
) -> Passkey:
    """Verify a registration response against its challenge (origin, RP id, user
    verification) and keep the passkey (audited `passkey.registered`). Invalid
    `passkey_invalid` for a response that does not verify, Conflict `passkey_exists` for a
    credential already registered, `passkey_limit` past MAX_PASSKEYS."""
    existing = list_passkeys(user)
    if len(existing) >= MAX_PASSKEYS:
        raise Conflict(f"At most {MAX_PASSKEYS} passkeys per account", code="passkey_limit")
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=_rp_id(),
            expected_origin=_origins(),
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise Invalid(
            "The passkey could not be registered. Try again.", code="passkey_invalid"
        ) from exc
    transports = _transports(credential)
    now = utcnow()
    passkey = Passkey(
        id=f"pk_{security.random_hex(12)}",
        tenant_id=user.tenant_id,
        user_id=user.id,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        transports=transports,
        aaguid=verified.aaguid or None,
        device_type=verified.credential_device_type.value,
        backed_up=verified.credential_backed_up,
        name=(name or "").strip()[:255] or f"Passkey {len(existing) + 1}",
        created_at=now,
        last_used_at=None,
    )
    add_unique(passkey, Conflict("This passkey is already registered", code="passkey_exists"))
    audit_service.record(
        action="passkey.registered",
        actor=actor,
        user_id=user.id,
        target=passkey.id,
        ip=ip,
        data={"device_type": passkey.device_type},
    )
    return passkey


def _transports(credential: str) -> list[str]:
    """The transports the browser reported (hints for the next sign-in), known ones only."""
    try:
        found = json.loads(credential).get("response", {}).get("transports") or []
    except (ValueError, AttributeError):
        return []
    return [t for t in found if isinstance(t, str) and t in _TRANSPORTS][:8]


def authentication_options(*, user: User | None = None) -> Ceremony:
    """Options to sign in with a passkey: any discoverable one of this RP (no `user`, the
    browser offers them, also in autofill), or one of `user`'s (the second factor)."""
    options = generate_authentication_options(
        rp_id=_rp_id(),
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(list_passkeys(user)) if user is not None else None,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return Ceremony(options_to_json(options), bytes_to_base64url(options.challenge))


def _find_by_credential(credential_id: str) -> Passkey | None:
    return db.session.scalar(select(Passkey).where(Passkey.credential_id == credential_id))


def verify_assertion(*, credential: str, challenge: str, user: User | None = None) -> Assertion:
    """Verify an assertion against its challenge: a passkey of this tenant (of `user` when
    given), origin, RP id, user verification, the user handle, the signature, and the
    counter (claimed atomically, with last_used_at). PasskeyRefused (an InvalidGrant)
    otherwise, with its reason; the caller audits."""
    try:
        parsed = parse_authentication_credential_json(credential)
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise PasskeyRefused("malformed", user) from exc
    passkey = _find_by_credential(bytes_to_base64url(parsed.raw_id))
    if passkey is None or (user is not None and passkey.user_id != user.id):
        raise PasskeyRefused("unknown_passkey", user)
    owner = user or user_service.find_user(passkey.user_id)
    if owner is None or owner.blocked:
        raise PasskeyRefused("blocked" if owner else "unknown_user", owner, passkey.id)
    handle = parsed.response.user_handle
    if handle is not None and not security.constant_time_equals(
        bytes_to_base64url(handle), bytes_to_base64url(user_handle(owner))
    ):
        raise PasskeyRefused("user_handle_mismatch", owner, passkey.id)
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=_rp_id(),
            expected_origin=_origins(),
            credential_public_key=base64url_to_bytes(passkey.public_key),
            # The counter is checked below, atomically, so a clone is told apart.
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise PasskeyRefused("invalid_assertion", owner, passkey.id) from exc
    new_count = verified.new_sign_count
    claimed = db.session.execute(
        update(Passkey)
        .where(
            Passkey.id == passkey.id,
            or_(Passkey.sign_count < new_count, and_(Passkey.sign_count == 0, new_count == 0)),
        )
        .values(
            sign_count=new_count,
            last_used_at=utcnow(),
            backed_up=verified.credential_backed_up,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        raise PasskeyRefused("cloned", owner, passkey.id)
    db.session.refresh(passkey)
    device_type = verified.credential_device_type.value
    amr = [AMR_BY_DEVICE_TYPE.get(device_type, "hwk"), "mfa"]
    return Assertion(user=owner, passkey=passkey, amr=amr)


def get_passkey(user: User, passkey_id: str) -> Passkey:
    """One of the user's passkeys; NotFound `passkey_not_found` (also another user's)."""
    passkey = db.session.scalar(
        select(Passkey).where(Passkey.id == passkey_id[:64], Passkey.user_id == user.id)
    )
    if passkey is None:
        raise NotFound("Passkey not found", code="passkey_not_found")
    return passkey


def rename(*, user: User, passkey_id: str, name: str) -> Passkey:
    """Rename one of the user's passkeys; NotFound, Invalid for an empty name."""
    passkey = get_passkey(user, passkey_id)
    name = name.strip()[:255]
    if not name:
        raise Invalid("Give the passkey a name", code="passkey_name_required")
    passkey.name = name
    db.session.flush()
    return passkey


def remove(*, user: User, passkey_id: str, actor: str, ip: str | None) -> None:
    """Remove one of the user's passkeys (audited `passkey.removed`); NotFound."""
    passkey = get_passkey(user, passkey_id)
    db.session.delete(passkey)
    audit_service.record(
        action="passkey.removed", actor=actor, user_id=user.id, target=passkey.id, ip=ip
    )
    db.session.flush()
