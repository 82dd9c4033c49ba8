"""What a user's tokens carry: the scopes they may act with (everything the user holds, or
for a registered application what it asked for and is allowed), and the OpenID claims
about the user that the ID token and userinfo show (for an application, those its
`profile` and `email` scopes ask for, OIDC Core §5.4).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from app.core import scopes as scope_catalogue
from app.core.errors import Invalid
from app.core.scopes import ADMIN_SCOPES, CURRENT_USER_SCOPES
from app.tokens.models import AuthSession
from app.users import policies as policy_service
from app.users.models import User

ADMIN_GROUP = "admin"
# OIDC Core §5.4 (`phone_number` goes with `profile`: no `phone` scope is offered).
PROFILE_CLAIMS = frozenset(
    {
        "name",
        "given_name",
        "family_name",
        "preferred_username",
        "picture",
        "phone_number",
        "updated_at",
    }
)
EMAIL_CLAIMS = frozenset({"email", "email_verified"})
# A token holding this may read its whole user anyway (/user/profile): every claim.
READ_OWN_USER = "read:current_user"


def user_scopes(user: User) -> list[str]:
    """What a user's access token may do: its own data, custom scopes, admin powers."""
    scopes = list(CURRENT_USER_SCOPES)
    if user.permissions_group == ADMIN_GROUP:
        scopes += ADMIN_SCOPES
    scopes += [s for s in user.custom_scopes or [] if isinstance(s, str)]
    scopes += policy_service.policy_scopes(user)
    return list(dict.fromkeys(scopes))


def application_scopes(user: User, *, requested: str | None, allowed: Collection[str]) -> list[str]:
    """What a registered application's new session of `user` may do: the scopes it asked
    for (`openid` when it asked for none, RFC 6749 §3.3), each one the application is
    `allowed` and, unless an OIDC scope, the user holds. Invalid `invalid_scope` for a
    scope no application can ask for."""
    asked = (requested or "").split() or list(scope_catalogue.DEFAULT_REQUESTED)
    for scope in asked:
        if scope not in scope_catalogue.APP_SCOPES:
            raise Invalid(
                scope_catalogue.unknown_scope_message(scope, scope_catalogue.APP_SCOPES),
                code="invalid_scope",
            )
    return scope_catalogue.granted(asked, held=user_scopes(user), allowed=allowed)


def session_scopes(
    user: User, session: AuthSession, *, allowed: Collection[str] | None = None
) -> list[str]:
    """What the tokens of a session may do now: an application's session keeps what it
    was granted, narrowed to what the user still holds and the application is still
    `allowed` (never widened); any other session holds whatever the user holds."""
    held = user_scopes(user)
    if session.scope is None:
        return held
    return scope_catalogue.granted(
        session.scope.split(),
        held=held,
        allowed=scope_catalogue.APP_SCOPES if allowed is None else allowed,
    )


def user_claims(user: User, scopes: Collection[str] | None) -> dict[str, Any]:
    """The OpenID claims about `user` (without empty ones) that a token granted `scopes`
    may see: all of them for a token that may read its user (or `scopes` None: a session
    without an application); else `sub`, plus the profile claims with `profile` and the
    email claims with `email`."""
    claims: dict[str, Any] = {
        "sub": user.id,
        "name": user.display_name or " ".join(p for p in (user.first_name, user.last_name) if p),
        "given_name": user.first_name,
        "family_name": user.last_name,
        "preferred_username": user.username,
        "picture": user.photo_url,
        "email": user.email,
        "email_verified": user.email_verified,
        "phone_number": user.phone_number,
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
    }
    if scopes is not None and READ_OWN_USER not in scopes:
        hidden = (PROFILE_CLAIMS if "profile" not in scopes else frozenset()) | (
            EMAIL_CLAIMS if "email" not in scopes else frozenset()
        )
        claims = {key: value for key, value in claims.items() if key not in hidden}
    return {key: value for key, value in claims.items() if value not in (None, "")}
