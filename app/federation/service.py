"""A sign-in through a connection, from the redirect upstream to the user it signs in.

`start` builds the upstream authorization request (state, nonce, PKCE S256) and the
pending sign-in the browser keeps in a cookie: encrypted with the key ring (its PKCE
verifier is never seen by the browser's history or the provider), bound to the state it
was made with, and spent once (`finish` claims the state). `finish` checks the
authorization response (state, RFC 9207 `iss`, the provider's error), exchanges the code
and checks the ID token (upstream.py), then finds the user by (connection, subject), or
links a verified address to a verified local account, or creates the user. The github
and oauth2 strategies (no ID token, no nonce, no issuer) exchange the code and read the
profile in oauth2.py instead, which gives user_for the same claims.

The app's own authorization request travels inside the pending sign-in as an opaque
`carry` dict: this layer does not know the applications above it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from app.audit import service as audit_service
from app.connections.models import OIDC, Connection
from app.connections.secrets import client_secret
from app.core import ratelimit, security
from app.core.db import add_unique, db, utcnow
from app.core.errors import Conflict
from app.federation import oauth2, upstream
from app.federation.upstream import FederationError, refused
from app.users import service as user_service
from app.users.models import Identity, User

# The strategies signed in with an ID token: OIDC and its presets (upstream.py); github
# and oauth2 go through oauth2.py instead.
OIDC_STRATEGIES = frozenset({OIDC, *upstream.PRESET_DISCOVERY})
# How long the user may take at the provider before the pending sign-in is void.
PENDING_TTL_SECONDS = 15 * 60
_PENDING_DATA = b"gatehouse:federation:pending"
_STATE_PURPOSE = "federation-state"
# Claims of an ID token that describe the token, not the user: kept out of profileData.
_TOKEN_CLAIMS = frozenset(
    {"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "s_hash", "azp", "jti"}
    | {"auth_time", "sid", "sub"}
)


class LinkRequired(FederationError):
    """The provider's address belongs to a local account and one side has not verified
    it: the user must sign in with that account to link (never a silent duplicate).
    `pending` is the upstream identity to link once they have (PendingLink)."""

    def __init__(self, pending: PendingLink) -> None:
        super().__init__(
            "access_denied",
            "An account with this email address already exists. Sign in with it (your "
            "password) to link this provider to it.",
        )
        self.pending = pending


class NoPasswordToLink(FederationError):
    """The accounts with the provider's address have no password (they sign in through
    another provider only): there is nothing to sign in with here to prove the account is
    theirs, so no link is offered (they sign in the way they did before)."""

    def __init__(self) -> None:
        super().__init__(
            "access_denied",
            "An account with this email address already exists, but it has no password to "
            "sign in with here, so this provider cannot be linked to it. Sign in the way "
            "you did before.",
        )


@dataclass(frozen=True)
class PendingLink:
    """An upstream identity waiting for its user to sign in to the account with its
    address: the connection, the subject, the address and the profile. It travels to the
    link page sealed by the surface (the browser never chooses the subject)."""

    connection_id: str
    connection_name: str
    subject: str
    email: str
    profile: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "con": self.connection_id,
            "name": self.connection_name,
            "sub": self.subject,
            "email": self.email,
            "profile": self.profile,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingLink:
        return cls(
            connection_id=str(data["con"]),
            connection_name=str(data["name"]),
            subject=str(data["sub"]),
            email=str(data["email"]),
            profile=dict(data["profile"]),
        )


@dataclass(frozen=True)
class Started:
    """Where to send the browser (`url`) and the pending sign-in it keeps (`pending`)."""

    url: str
    pending: str


@dataclass(frozen=True)
class Pending:
    """A pending sign-in read back from the browser, not yet spent."""

    tenant_id: str
    connection_id: str
    state: str
    nonce: str
    verifier: str
    issuer: str
    carry: dict[str, Any]


def supports(connection: Connection) -> bool:
    """Whether this module can sign in through the connection's strategy."""
    return connection.strategy in OIDC_STRATEGIES or connection.strategy in oauth2.STRATEGIES


def enabled_connections(client_id: str) -> list[Connection]:
    """The current tenant's connections serving this app (whose sign-in is supported),
    by name."""
    rows = db.session.scalars(select(Connection).order_by(Connection.name))
    return [row for row in rows if client_id in (row.enabled_clients or []) and supports(row)]


def find_enabled(client_id: str, name: str) -> Connection | None:
    """The current tenant's connection `name` if it serves this app."""
    for connection in enabled_connections(client_id):
        if connection.name == name:
            return connection
    return None


def connection_by_id(connection_id: str) -> Connection | None:
    """The current tenant's connection with this id (None when removed meanwhile)."""
    return db.session.get(Connection, connection_id)


def start(*, connection: Connection, carry: dict[str, Any], redirect_uri: str) -> Started:
    """The upstream authorization request for a sign-in through `connection`, and its
    pending sign-in (FederationError when the provider's discovery fails)."""
    state, nonce = security.random_token(32), security.random_token(32)
    verifier = security.random_token(48)
    if connection.strategy in oauth2.STRATEGIES:
        # No issuer to name (no discovery, no ID token, no nonce): "" in the pending
        # sign-in tells finish so.
        url = oauth2.authorization_url(
            connection, state=state, verifier=verifier, redirect_uri=redirect_uri
        )
        return Started(url=url, pending=_seal(connection, state, nonce, verifier, "", carry))
    provider = upstream.provider_of(connection)
    options = connection.options or {}
    scopes = str(options.get("scopes") or options.get("scope") or upstream.DEFAULT_SCOPES)
    if "openid" not in scopes.split():
        scopes = f"openid {scopes}"
    query = {
        "response_type": "code",
        "client_id": str(options.get("client_id", "")),
        "redirect_uri": redirect_uri,
        "scope": scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": security.pkce_s256(verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in provider.authorization_endpoint else "?"
    sealed = _seal(connection, state, nonce, verifier, provider.issuer, carry)
    return Started(
        url=f"{provider.authorization_endpoint}{separator}{urlencode(query)}", pending=sealed
    )


def _seal(
    connection: Connection, state: str, nonce: str, verifier: str, issuer: str, carry: dict
) -> str:
    pending = {
        "t": connection.tenant_id,
        "c": connection.id,
        "s": state,
        "n": nonce,
        "v": verifier,
        "i": issuer,
        "at": int(time.time()),
        "carry": carry,
    }
    return security.keyring().encrypt(json.dumps(pending).encode(), _PENDING_DATA)


def read_pending(sealed: str | None) -> Pending | None:
    """The browser's pending sign-in, or None when it has none, it is not ours or it is
    older than PENDING_TTL_SECONDS."""
    if not sealed:
        return None
    try:
        data = json.loads(security.keyring().decrypt(sealed, _PENDING_DATA))
        if time.time() - int(data["at"]) > PENDING_TTL_SECONDS:
            return None
        return Pending(
            tenant_id=str(data["t"]),
            connection_id=str(data["c"]),
            state=str(data["s"]),
            nonce=str(data["n"]),
            verifier=str(data["v"]),
            issuer=str(data["i"]),
            carry=dict(data["carry"]),
        )
    except Exception:  # noqa: BLE001  (anything unreadable is no pending sign-in)
        return None


def check_state(pending: Pending, state: str | None) -> None:
    """The response's state must be the one this browser's pending sign-in was made with
    (a forged or swapped state is refused), and it is spent here: a replayed response
    is refused."""
    if not state or not security.constant_time_equals(state, pending.state):
        raise refused("The sign-in's state does not match this browser's: start again")
    if not ratelimit.claim_once(_STATE_PURPOSE, security.sha256_hex(state), PENDING_TTL_SECONDS):
        raise refused("This sign-in response was already used: start again")


def finish(
    *, pending: Pending, params: dict[str, str], redirect_uri: str, ip: str | None
) -> tuple[Connection, User]:
    """Check the provider's authorization response `params` for the pending sign-in whose
    state it carries (check_state first), exchange its code, check the ID token, and
    return the connection and the user it signs in (found, linked or created).
    FederationError (LinkRequired among them) otherwise; no user is created then."""
    check_state(pending, params.get("state"))
    connection = db.session.get(Connection, pending.connection_id)
    if connection is None or not supports(connection):
        raise refused("The connection was removed meanwhile")
    issuer = params.get("iss")
    # An OAuth2 connection has no issuer identifier to compare (pending.issuer is "").
    if (
        issuer is not None
        and pending.issuer
        and not upstream.issuer_matches(pending.issuer, issuer)
    ):
        # RFC 9207: the response comes from another provider than the one we sent the
        # browser to (a mix-up attack): its code is never sent anywhere.
        raise refused("The sign-in response came from another identity provider")
    if "error" in params:
        error = params["error"][:100]
        if error == "access_denied":
            raise refused("The sign-in was cancelled at the identity provider")
        raise refused(f"The identity provider answered with an error ({error})")
    code = params.get("code")
    if not code:
        raise refused("The identity provider's answer holds no code")
    if connection.strategy in oauth2.STRATEGIES:
        claims = oauth2.sign_in(
            connection,
            client_secret=client_secret(connection) or "",
            code=code,
            verifier=pending.verifier,
            redirect_uri=redirect_uri,
        )
        return connection, user_for(connection=connection, claims=claims, ip=ip)
    provider = upstream.provider_of(connection)
    if provider.issuer != pending.issuer:
        raise refused("The identity provider changed its issuer meanwhile")
    options = connection.options or {}
    client_id = str(options.get("client_id", ""))
    tokens = upstream.exchange_code(
        provider=provider,
        client_id=client_id,
        client_secret=client_secret(connection) or "",
        code=code,
        code_verifier=pending.verifier,
        redirect_uri=redirect_uri,
        auth_method=options.get("token_endpoint_auth_method"),
    )
    claims = upstream.validate_id_token(
        provider=provider, token=tokens["id_token"], client_id=client_id, nonce=pending.nonce
    )
    if not claims.get("email"):
        claims = _with_userinfo_email(provider, tokens, claims)
    return connection, user_for(connection=connection, claims=claims, ip=ip)


def _with_userinfo_email(
    provider: upstream.Provider, tokens: dict[str, Any], claims: dict[str, Any]
) -> dict[str, Any]:
    """The ID token's claims with the address (and its flag) from the userinfo endpoint,
    for a provider that keeps them out of the ID token (OIDC Core §5.3.2: userinfo's `sub`
    must be the ID token's, or its answer is someone else's and is refused). Unchanged
    when the provider has no userinfo endpoint or gave no access token."""
    access_token = tokens.get("access_token")
    if not provider.userinfo_endpoint or not isinstance(access_token, str):
        return claims
    info = upstream.userinfo(provider, access_token)
    if info.get("sub") != claims["sub"]:
        raise refused("The identity provider's userinfo names another user than its ID token")
    found = {key: info[key] for key in ("email", "email_verified") if key in info}
    return {**claims, **found}


def _verified(claims: dict[str, Any]) -> bool:
    # Some providers (Apple) send the flag as a string.
    return claims.get("email_verified") in (True, "true")


def _profile(claims: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in claims.items() if key not in _TOKEN_CLAIMS}


def _identity(connection: Connection, user: User, claims: dict[str, Any]) -> Identity:
    return Identity(
        tenant_id=user.tenant_id,
        user_id=user.id,
        provider=connection.strategy,
        provider_user_id=str(claims["sub"]),
        connection=connection.name,
        is_social=connection.is_social,
        profile_data=_profile(claims),
        created_at=utcnow(),
    )


def link(*, pending: PendingLink, user: User, ip: str | None) -> None:
    """Link the upstream identity `pending` to `user`, who just signed in to the account
    with its address (LinkRequired's way out): audited `identity.linked`. Refused when
    the connection was removed meanwhile or the account's address changed; Conflict when
    the identity was linked meanwhile (to this account or another)."""
    connection = db.session.get(Connection, pending.connection_id)
    if connection is None or connection.name != pending.connection_name:
        raise refused("The connection was removed meanwhile")
    if (user.email_normalized or "") != pending.email.casefold():
        raise refused("This account does not have the identity provider's address")
    claims = {**pending.profile, "sub": pending.subject}
    add_unique(_identity(connection, user, claims), Conflict("Already linked"))
    audit_service.record(
        action="identity.linked",
        actor=f"user:{user.id}",
        user_id=user.id,
        target=f"{connection.strategy}|{pending.subject}",
        ip=ip,
        data={"confirmed_by": "sign-in"},
    )


def _refuse_blocked(user: User) -> None:
    if user.blocked:
        raise refused("This account is blocked")


def _text(value: Any) -> str | None:
    return value[:255] if isinstance(value, str) and value else None


def user_for(*, connection: Connection, claims: dict[str, Any], ip: str | None) -> User:
    """The user an upstream identity signs in: the one linked to (connection, sub); else
    the local account with that address when both sides verified it (linked now,
    audited `identity.linked`); else a new user (audited `user.created`). LinkRequired
    when the address is taken and not verified on both sides; refused for a blocked user
    and for a provider that shares no address."""
    subject = str(claims["sub"])
    identity = db.session.scalar(
        select(Identity).where(
            Identity.connection == connection.name, Identity.provider_user_id == subject
        )
    )
    if identity is not None:
        user = user_service.get_user(identity.user_id)
        _refuse_blocked(user)
        identity.profile_data = _profile(claims)  # the provider's latest view of the user
        return user
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise refused("The identity provider shared no email address: it is needed to sign in")
    verified = _verified(claims)
    existing = user_service.find_by_email(email)
    if existing:
        linkable = [user for user in existing if user.email_verified]
        if not (verified and linkable):
            if not any(user.password_hash for user in existing):
                raise NoPasswordToLink()
            raise LinkRequired(
                PendingLink(
                    connection_id=connection.id,
                    connection_name=connection.name,
                    subject=subject,
                    email=email,
                    profile=_profile(claims),
                )
            )
        user = linkable[0]
        _refuse_blocked(user)
        add_unique(_identity(connection, user, claims), Conflict("Already linked"))
        audit_service.record(
            action="identity.linked",
            actor=f"connection:{connection.name}",
            user_id=user.id,
            target=f"{connection.strategy}|{subject}",
            ip=ip,
            data={"automatic": "verified email"},
        )
        return user
    user = user_service.create_user(
        email=email[:255],
        email_verified=verified,
        display_name=_text(claims.get("name")),
        first_name=_text(claims.get("given_name")),
        last_name=_text(claims.get("family_name")),
    )
    add_unique(_identity(connection, user, claims), Conflict("Already linked"))
    audit_service.record(
        action="user.created", actor=f"connection:{connection.name}", user_id=user.id, ip=ip
    )
    return user
