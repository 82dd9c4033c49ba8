"""A software WebAuthn authenticator for the HTTP tests: an EC P-256 key made with
`cryptography`, attestation "none", and assertions signed for real, so the server's
verification (py_webauthn) runs unchanged. Flags, counter, origin and RP id can be bent
to test each refusal."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).decode().rstrip("=")


def from_b64url(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One credential on one authenticator. `synced` sets the backup flags (a
    multi-device passkey, amr "swk"); `counter` is the signature count of the next use
    (None: an authenticator that does not count, always 0)."""

    rp_id: str
    origin: str
    synced: bool = False
    counter: int | None = 1
    credential_id: bytes = field(default_factory=lambda: os.urandom(16))
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    user_handle: bytes | None = None

    def _flags(self, *, uv: bool, attested: bool) -> int:
        flags = UP | (UV if uv else 0)
        if self.synced:
            flags |= BE | BS
        return flags | (AT if attested else 0)

    def _count(self) -> int:
        if self.counter is None:
            return 0
        count = self.counter
        self.counter += 1
        return count

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()

    def register(
        self,
        options: dict[str, Any],
        *,
        uv: bool = True,
        origin: str | None = None,
        rp_id: str | None = None,
    ) -> str:
        """The registration response (JSON) to `options` (navigator.credentials.create)."""
        self.user_handle = from_b64url(options["user"]["id"])
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        attested = (
            bytes(16)
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        auth_data = (
            rp_hash
            + bytes([self._flags(uv=uv, attested=True)])
            + struct.pack(">I", self._count())
            + attested
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
                "clientExtensionResults": {},
            }
        )

    def assert_(
        self,
        options: dict[str, Any],
        *,
        uv: bool = True,
        origin: str | None = None,
        rp_id: str | None = None,
        count: int | None = None,
        user_handle: bytes | None = None,
    ) -> str:
        """The assertion (JSON) answering `options` (navigator.credentials.get)."""
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        sign_count = self._count() if count is None else count
        auth_data = (
            rp_hash + bytes([self._flags(uv=uv, attested=False)]) + struct.pack(">I", sign_count)
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        handle = user_handle or self.user_handle
        response = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if handle is not None:
            response["userHandle"] = b64url(handle)
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": response,
                "clientExtensionResults": {},
            }
        )
