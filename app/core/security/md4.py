"""MD4 (RFC 1320) in pure Python with the standard digest interface (update/copy/digest), so `hmac`
can take it too. OpenSSL 3 dropped MD4 from its default provider and no well-kept package
offers it alone, yet Auth0 still imports md4 hashes (and NTLM is md4 of UTF-16LE). Used only
to verify imported password hashes (core/security/password_formats.py); never for anything new.
"""

from __future__ import annotations

import struct
from collections.abc import Callable


def _rol(value: int, shift: int) -> int:
    value &= 0xFFFFFFFF
    return ((value << shift) | (value >> (32 - shift))) & 0xFFFFFFFF


_MD4_ROUNDS: tuple[
    tuple[Callable[[int, int, int], int], int, tuple[int, ...], tuple[int, ...]], ...
]
_MD4_ROUNDS = (
    (lambda x, y, z: (x & y) | (~x & z), 0, tuple(range(16)), (3, 7, 11, 19)),
    (
        lambda x, y, z: (x & y) | (x & z) | (y & z),
        0x5A827999,
        (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
        (3, 5, 9, 13),
    ),
    (
        lambda x, y, z: x ^ y ^ z,
        0x6ED9EBA1,
        (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15),
        (3, 9, 11, 15),
    ),
)


def _md4_block(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    words = struct.unpack("<16I", block)
    a, b, c, d = state
    for function, constant, order, shifts in _MD4_ROUNDS:
        for step, index in enumerate(order):
            a = _rol(a + function(b, c, d) + words[index] + constant, shifts[step % 4])
            a, b, c, d = d, a, b, c
    s0, s1, s2, s3 = state
    mask = 0xFFFFFFFF
    return (s0 + a) & mask, (s1 + b) & mask, (s2 + c) & mask, (s3 + d) & mask


class MD4:
    """MD4 with the standard digest interface (update/copy/digest), so `hmac` can take it too."""

    name, digest_size, block_size = "md4", 16, 64

    def __init__(self, data: bytes = b"") -> None:
        self._state = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
        self._pending = b""
        self._length = 0
        self.update(data)

    def update(self, data: bytes) -> None:
        self._length += len(data)
        pending = self._pending + bytes(data)
        whole = len(pending) - len(pending) % 64
        for offset in range(0, whole, 64):
            self._state = _md4_block(self._state, pending[offset : offset + 64])
        self._pending = pending[whole:]

    def copy(self) -> MD4:
        clone = MD4()
        clone._state, clone._pending, clone._length = self._state, self._pending, self._length
        return clone

    def digest(self) -> bytes:
        tail = self._pending + b"\x80" + b"\x00" * ((55 - len(self._pending)) % 64)
        tail += struct.pack("<Q", (self._length * 8) & 0xFFFFFFFFFFFFFFFF)
        state = self._state
        for offset in range(0, len(tail), 64):
            state = _md4_block(state, tail[offset : offset + 64])
        return struct.pack("<4I", *state)

    def hexdigest(self) -> str:
        return self.digest().hex()
