"""Identity linking: fold a secondary user into a primary one (its identities move over
and the secondary stops existing as a user), and split an identity back out.

The secondary is named by the caller's any-user scope (`{provider, user_id}`) or proven by
the secondary's own ID token (`link_with`): RS256, issued by this tenant, unexpired, to the
audience the caller's own credential was issued to (an app's token: that app, as Auth0
requires; any other: the tenant), from a recent sign-in whose session still stands. A
blocked user neither links nor is linked, and a secondary that still holds data linking
would delete is refused, never emptied silently.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select

from app.audit import service as audit_service
from app.core.db import add_unique, db, utcnow
from app.core.errors import AppError, Conflict, Forbidden, Invalid, NotFound
from app.core.tenancy import Principal
from app.credentials import devices as device_service
from app.credentials import mfa as mfa_service
from app.properties import service as property_service
from app.secrets import service as secret_service
from app.tokens import service as token_service
from app.tokens import signing
from app.users import service as user_service
from app.users.models import PASSWORD_CONNECTION, PRIMARY_PROVIDER, Identity, User

# Auth0 names its database users' provider "auth0"; code written for it links with that.
USER_PROVIDERS = frozenset({PRIMARY_PROVIDER, "auth0"})
PROFILE_KEYS = (
    "email",
    "email_verified",
    "username",
    "name",
    "given_name",
    "family_name",
    "blocked",
)


def _profile_data(user: User) -> dict[str, Any]:
    data = {
        "email": user.email,
        "email_verified": user.email_verified,
        "username": user.username,
        "name": user.display_name,
        "given_name": user.first_name,
        "family_name": user.last_name,
        # Kept so that unlinking restores the user as it was (a block survives the round trip).
        "blocked": user.blocked,
    }
    return {key: value for key, value in data.items() if value is not None}


def _invalid_token(message: str = "link_with is not a valid ID token of this tenant") -> Invalid:
    return Invalid(message, code="invalid_link_token")


def _secondary_from_token(token: str, *, tenant_id: str, audience: str) -> User:
    """The user an ID token names: issued in this tenant to `audience`, at a sign-in
    within REAUTH_MAX_AGE_SECONDS, of a session not revoked since (a password change or
    reset revokes them). Invalid for anything else; NotFound for a user gone."""
    try:
        claims = signing.verify_id_token(token)
    except AppError as exc:
        raise _invalid_token() from exc
    if claims.get("tid") != tenant_id:
        raise _invalid_token()
    if claims.get("aud") != audience:
        raise _invalid_token(
            "link_with must be an ID token issued to the application the caller's token "
            "was issued to (its azp; the tenant id for a caller that is no application's)"
        )
    max_age = current_app.config["REAUTH_MAX_AGE_SECONDS"]
    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int) or utcnow().timestamp() - auth_time > max_age:
        raise _invalid_token(f"link_with must come from a sign-in within the last {max_age} s")
    secondary = user_service.find_user(str(claims["sub"]))
    if secondary is None:
        raise NotFound("User not found", code="user_not_found")
    session_id = claims.get("sid")
    if not isinstance(session_id, str) or not token_service.session_id_is_live(
        secondary, session_id
    ):
        raise _invalid_token("link_with was issued to a session that has ended; sign in again")
    return secondary


def _refuse_blocked(user: User, role: str) -> None:
    if user.blocked:
        raise Conflict(
            f"The {role} user is blocked: a blocked user is never linked", code="user_blocked"
        )


def _refuse_data_loss(secondary: User) -> None:
    """Conflict naming what the secondary holds that linking would delete (its secrets,
    properties, second factor, device keys): the caller moves or removes it first."""
    held = []
    for count, one, many in (
        (secret_service.count_secrets(user_id=secondary.id), "secret", "secrets"),
        (property_service.count_properties(user_id=secondary.id), "property", "properties"),
        (
            device_service.count_credentials(user_id=secondary.id),
            "device credential",
            "device credentials",
        ),
    ):
        if count:
            held.append(f"{count} {one if count == 1 else many}")
    if mfa_service.list_enrolments(secondary):
        held.append("an MFA enrolment")
    if held:
        raise Conflict(
            f"The user to link still holds {', '.join(held)}; linking would delete them. "
            "Remove them (or move them to the primary user) first.",
            code="secondary_holds_data",
        )


def link(
    *,
    actor: Principal,
    primary: User,
    expected_audience: str,
    provider: str | None = None,
    user_id: str | None = None,
    link_with: str | None = None,
) -> User:
    """Fold the secondary user into `primary` (audited `identity.linked`) and return the
    primary. A caller without `update:users` may link only with `link_with`, an ID token
    whose `aud` is `expected_audience` (the audience of the caller's own credential,
    Principal.audience) (Forbidden). Invalid (bad token, linking to itself), NotFound (no
    such secondary), Conflict `user_blocked` or `secondary_holds_data`, Unauthenticated
    `reauthentication_required` for a user linking to itself without a recent sign-in."""
    user_service.check_recent_sign_in(actor=actor, user=primary)
    _refuse_blocked(primary, "primary")
    if link_with is not None:
        secondary = _secondary_from_token(
            link_with, tenant_id=primary.tenant_id, audience=expected_audience
        )
    else:
        if not actor.has("update:users"):
            raise Forbidden(
                "A user may link accounts only with link_with (the other account's ID token)",
                code="forbidden_field",
            )
        if provider not in USER_PROVIDERS or user_id is None:
            raise NotFound("User not found", code="user_not_found")
        secondary = user_service.get_user(user_id)
    if secondary.id == primary.id:
        raise Invalid("A user cannot be linked to itself", code="link_to_self")
    # The row lock holds off rows being added to the secondary between the count below and
    # its deletion: their foreign key waits on it, then finds the user gone (that request
    # fails; nothing is deleted unseen), and rows committed before it are counted.
    secondary = user_service.lock_user(secondary)
    _refuse_blocked(secondary, "secondary")
    _refuse_data_loss(secondary)
    moved = [_primary_identity_of(secondary, primary)]
    for identity in list(secondary.linked_identities):
        secondary.linked_identities.remove(identity)
        moved.append(_copy(identity, primary))
    # The secondary's remaining rows (tokens, sessions, policies) go with it: its tokens
    # then fail the bearer check, which needs the user to exist.
    db.session.delete(secondary)
    db.session.flush()
    for identity in moved:
        add_unique(identity, Conflict("This identity is already linked", code="identity_exists"))
    audit_service.record(
        action="identity.linked",
        actor=actor.label,
        user_id=primary.id,
        target=f"{PRIMARY_PROVIDER}|{secondary.id}",
        ip=actor.ip,
        data={"secondary": secondary.id, "identities": len(moved)},
    )
    db.session.refresh(primary, ["linked_identities"])
    return primary


def _primary_identity_of(secondary: User, primary: User) -> Identity:
    return Identity(
        tenant_id=primary.tenant_id,
        user_id=primary.id,
        provider=PRIMARY_PROVIDER,
        provider_user_id=secondary.id,
        connection=PASSWORD_CONNECTION if secondary.password_hash else PRIMARY_PROVIDER,
        is_social=False,
        profile_data=_profile_data(secondary),
        created_at=utcnow(),
    )


def _copy(identity: Identity, primary: User) -> Identity:
    return Identity(
        tenant_id=primary.tenant_id,
        user_id=primary.id,
        provider=identity.provider,
        provider_user_id=identity.provider_user_id,
        connection=identity.connection,
        is_social=identity.is_social,
        profile_data=dict(identity.profile_data or {}),
        created_at=utcnow(),
    )


def unlink(*, actor: Principal, primary: User, provider: str, user_id: str) -> User:
    """Split a linked identity off `primary` (audited `identity.unlinked`) and return the
    primary. An identity of this service becomes a user again (no password: it signs in
    after a reset) and keeps the block it had when linked. Invalid for the primary
    identity; NotFound for one not linked; Conflict when its id was taken by a new user
    meanwhile; Unauthenticated `reauthentication_required` for a user unlinking from
    itself without a recent sign-in."""
    user_service.check_recent_sign_in(actor=actor, user=primary)
    if provider in USER_PROVIDERS and user_id == primary.id:
        raise Invalid("The primary identity cannot be unlinked", code="primary_identity")
    # Auth0's route names (provider, user_id); since connections, two OIDC connections
    # may each have linked a subject "123" to one user: the oldest link goes first.
    identity = db.session.scalar(
        select(Identity)
        .where(
            Identity.user_id == primary.id,
            Identity.provider == (PRIMARY_PROVIDER if provider in USER_PROVIDERS else provider),
            Identity.provider_user_id == user_id,
        )
        .order_by(Identity.id)
        .limit(1)
    )
    if identity is None:
        raise NotFound("The user has no such linked identity", code="identity_not_found")
    primary.linked_identities.remove(identity)
    db.session.flush()
    if identity.provider == PRIMARY_PROVIDER:
        _restore_user(actor, identity)
    audit_service.record(
        action="identity.unlinked",
        actor=actor.label,
        user_id=primary.id,
        target=f"{identity.provider}|{identity.provider_user_id}",
        ip=actor.ip,
    )
    db.session.flush()
    return primary


def _restore_user(actor: Principal, identity: Identity) -> None:
    data = {k: v for k, v in (identity.profile_data or {}).items() if k in PROFILE_KEYS}
    username = data.get("username")
    if username and user_service.find_by_username(username) is not None:
        username = None  # taken meanwhile: the restored user goes without
    user_service.create_user(
        user_id=identity.provider_user_id,
        username=username,
        email=data.get("email"),
        email_verified=bool(data.get("email_verified", False)),
        display_name=data.get("name"),
        first_name=data.get("given_name"),
        last_name=data.get("family_name"),
        blocked=data.get("blocked") is True,
        actor=actor,
    )
