"""The one shape every import source is read into, and every export is written from: a
user as Gatehouse holds it, whatever file it came from (Auth0 bulk import, Firebase
`auth:export`, a Gatehouse export). Sources turn their format into `UserRecord`s or
`Rejected`s; the importer only ever sees these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The profile columns a record may set, as named on app.users.models.User.
PROFILE_FIELDS = (
    "email_verified",
    "display_name",
    "first_name",
    "last_name",
    "nickname",
    "photo_url",
    "phone_number",
    "blocked",
    "permissions_group",
    "custom_scopes",
    "settings",
    "user_metadata",
    "app_metadata",
    "require_twofactor_auth",
)


@dataclass
class UserRecord:
    """One user to insert or update. `password_hash` is already the stored string (argon2id,
    a foreign format as app.credentials.foreign_hashes returns it), never a password;
    `totp_secret` is the base32 secret in clear (encrypted when written). Fields left at
    None (or absent from `profile`) are not touched by an upsert."""

    index: int  # the record's position in the file, from 0
    user_id: str | None
    email: str | None
    username: str | None
    profile: dict[str, Any] = field(default_factory=dict)
    password_hash: str | None = None
    totp_secret: str | None = None
    # Linked identities: [{provider, user_id, connection, isSocial, profileData}].
    identities: list[dict[str, Any]] = field(default_factory=list)
    # Gatehouse format only: [{resource, resource_type, type}], {key: value}, {name: value}.
    policies: list[dict[str, Any]] | None = None
    properties: dict[str, Any] | None = None
    secrets: dict[str, str] | None = None
    created_at: str | None = None
    # Gatehouse format only: what else a user holds that the importer writes:
    # device_credentials [{device_name, device_id, type, value, client_id, created_at}].
    extra: dict[str, Any] = field(default_factory=dict)
    # The user as the file gave it, hashes and secrets removed: what an error report shows.
    shown: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rejected:
    """A record that cannot be imported: Auth0's per-user error, `errors[{code, message,
    path}]`, with the user as the file gave it (hashes and secrets removed)."""

    index: int
    shown: dict[str, Any]
    errors: list[dict[str, str]]


class FileError(Exception):
    """The file as a whole cannot be read (not JSON, truncated, wrong top-level shape):
    the job fails, and `offset` says at which byte."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# Keys never copied into `shown` (an error report or a log must not hold them).
HIDDEN_KEYS = frozenset(
    {
        "password",
        "password_hash",
        "custom_password_hash",
        "passwordHash",
        "salt",
        "mfa_factors",
        "totp_secret",
        "secrets",
    }
)


def shown(user: Any) -> dict[str, Any]:
    """`user` without its hashes and secrets (a non-object is shown as `{}`)."""
    if not isinstance(user, dict):
        return {}
    return {key: value for key, value in user.items() if key not in HIDDEN_KEYS}
