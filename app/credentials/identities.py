"""Identity linking: fold a secondary user into a primary one (its identities move over
and the secondary stops existing as a user), and split an identity back out.

The secondary is named by the caller's any-user scope (`{provider, user_id}`) or proven by
the secondary's own ID token (`link_with`: RS256, issued by this tenant, unexpired).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.applications import service as application_service
from app.audit import service as audit_service
from app.core.db import add_unique, db, utcnow
from app.core.errors import AppError, Conflict, Forbidden, Invalid, NotFound
from app.core.tenancy import Principal
from app.tokens import signing
from app.users import service as user_service
from app.users.models import PASSWORD_CONNECTION, PRIMARY_PROVIDER, Identity, User

# Auth0 names its database users' provider "auth0"; code written for it links with that.
USER_PROVIDERS = frozenset({PRIMARY_PROVIDER, "auth0"})
PROFILE_KEYS = ("email", "email_verified", "username", "name", "given_name", "family_name")


def _profile_data(user: User) -> dict[str, Any]:
    data = {
        "email": user.email,
        "email_verified": user.email_verified,
        "username": user.username,
        "name": user.display_name,
        "given_name": user.first_name,
        "family_name": user.last_name,
    }
    return {key: value for key, value in data.items() if value is not None}


def _secondary_from_token(token: str, tenant_id: str) -> User:
    """The user an ID token of this tenant names — issued to the tenant itself or to one of
    its registered applications; Invalid for anything else."""
    invalid = Invalid("link_with is not a valid ID token of this tenant", code="invalid_link_token")
    try:
        claims = signing.verify_id_token(token)
    except AppError as exc:
        raise invalid from exc
    audience = claims.get("aud")
    if claims.get("tid") != tenant_id or not isinstance(audience, str):
        raise invalid
    if audience != tenant_id:
        application = application_service.find_client(audience)
        if application is None or application.tenant_id != tenant_id:
            raise invalid
    secondary = user_service.find_user(str(claims["sub"]))
    if secondary is None:
        raise NotFound("User not found", code="user_not_found")
    return secondary


def link(
    *,
    actor: Principal,
    primary: User,
    provider: str | None = None,
    user_id: str | None = None,
    link_with: str | None = None,
) -> User:
    """Fold the secondary user into `primary` (audited `identity.linked`) and return the
    primary. A caller without `update:users` may link only with `link_with` (Forbidden).
    Invalid (bad token, linking to itself), NotFound (no such secondary)."""
    if link_with is not None:
        secondary = _secondary_from_token(link_with, primary.tenant_id)
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
    moved = [_primary_identity_of(secondary, primary)]
    for identity in list(secondary.linked_identities):
        secondary.linked_identities.remove(identity)
        moved.append(_copy(identity, primary))
    # The secondary's rows (tokens, secrets, enrolments, …) go with it: its tokens then
    # fail the bearer check, which needs the user to exist.
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
    after a reset). Invalid for the primary identity; NotFound for one not linked;
    Conflict when its id was taken by a new user meanwhile."""
    if provider in USER_PROVIDERS and user_id == primary.id:
        raise Invalid("The primary identity cannot be unlinked", code="primary_identity")
    identity = db.session.scalar(
        select(Identity).where(
            Identity.user_id == primary.id,
            Identity.provider == (PRIMARY_PROVIDER if provider in USER_PROVIDERS else provider),
            Identity.provider_user_id == user_id,
        )
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
        actor=actor,
    )
