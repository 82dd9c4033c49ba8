"""A connection's client secret, encrypted with the key ring and bound to its row."""

from __future__ import annotations

from app.connections.models import Connection
from app.core import security


def associated_data(connection: Connection) -> bytes:
    # Binds a ciphertext to its row: a value copied into another row does not decrypt.
    return f"connection:{connection.tenant_id}:{connection.id}".encode()


def set_client_secret(connection: Connection, secret: str | None) -> None:
    """Store `secret` encrypted (None clears it)."""
    connection.client_secret_encrypted = (
        security.keyring().encrypt(secret.encode(), associated_data(connection)) if secret else None
    )


def client_secret(connection: Connection) -> str | None:
    """The decrypted client secret, for the token request upstream only; never answered."""
    if not connection.client_secret_encrypted:
        return None
    return (
        security.keyring()
        .decrypt(connection.client_secret_encrypted, associated_data(connection))
        .decode()
    )
