"""A user's authentication methods as the management surface shows them (Auth0's
`/users/{id}/authentication-methods`): each passkey, and the TOTP enrolment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app

from app.core.errors import NotFound
from app.core.tenancy import Principal
from app.credentials import mfa as mfa_service
from app.credentials import passkeys as passkey_service
from app.users import service as user_service
from app.users.models import User

PASSKEY, TOTP = "passkey", "totp"


@dataclass(frozen=True)
class AuthenticationMethod:
    """One method; the passkey fields are None for a TOTP enrolment and the reverse."""

    id: str
    type: str
    created_at: datetime
    last_auth_at: datetime | None
    confirmed: bool | None = None
    name: str | None = None
    credential_device_type: str | None = None
    credential_backed_up: bool | None = None
    identity_user_id: str | None = None
    key_id: str | None = None
    public_key: str | None = None
    user_handle: str | None = None
    aaguid: str | None = None
    relying_party_identifier: str | None = None
    transports: list[str] | None = None
    usage: list[str] | None = None


def list_methods(user: User) -> list[AuthenticationMethod]:
    """The user's passkeys, then its TOTP enrolment (confirmed or pending), oldest first."""
    rp_id = str(current_app.config["WEBAUTHN_RP_ID"])
    handle = passkey_service.bytes_to_base64url(passkey_service.user_handle(user))
    methods = [
        AuthenticationMethod(
            id=p.id,
            type=PASSKEY,
            created_at=p.created_at,
            last_auth_at=p.last_used_at,
            name=p.name,
            credential_device_type=p.device_type,
            credential_backed_up=p.backed_up,
            identity_user_id=user.id,
            key_id=p.credential_id,
            public_key=p.public_key,
            user_handle=handle,
            aaguid=p.aaguid,
            relying_party_identifier=rp_id,
            transports=list(p.transports or []),
            usage=["primary", "secondary"],
        )
        for p in passkey_service.list_passkeys(user)
    ]
    totp = mfa_service.find_totp(user)
    if totp is not None:
        methods.append(
            AuthenticationMethod(
                id=totp.id,
                type=TOTP,
                created_at=totp.created_at,
                last_auth_at=totp.last_auth_at,
                confirmed=totp.status == mfa_service.CONFIRMED,
            )
        )
    return methods


def delete_method(*, actor: Principal, user: User, method_id: str) -> None:
    """Delete one of the user's methods by id (a passkey, audited `passkey.removed`; the
    TOTP enrolment, audited `mfa.removed`). NotFound `authentication_method_not_found`
    (also another user's or tenant's); Unauthenticated `reauthentication_required` for a
    user acting on itself without a recent sign-in."""
    user_service.check_recent_sign_in(actor=actor, user=user)
    if any(p.id == method_id for p in passkey_service.list_passkeys(user)):
        passkey_service.remove(user=user, passkey_id=method_id, actor=actor.label, ip=actor.ip)
        return
    totp = mfa_service.find_totp(user)
    if totp is not None and totp.id == method_id:
        mfa_service.remove(actor=actor, user=user, provider="google-authenticator")
        return
    raise NotFound("Authentication method not found", code="authentication_method_not_found")
