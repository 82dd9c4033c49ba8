"""Passphrase-encrypted streams (a Gatehouse export holding TOTP or user secrets): the
passphrase becomes a key through scrypt, and the stream is sealed in chunks with
AES-256-GCM, so a file of any size is written and read without holding it whole.

Layout: `MAGIC` (15 bytes), salt (16), nonce prefix (4), passphrase check (16), then
chunks of a 4-byte big-endian length and the sealed bytes. A chunk's nonce is the prefix
and its 8-byte index; its associated data is the header, the index and a final flag, so a
reordered, dropped or appended chunk and a file cut after any chunk but the last fail.
The check value (derived with the key, not from it) tells a wrong passphrase from an
altered file. The framing is here; the cipher (scrypt, AES-256-GCM, the check's constant-time
compare) is core.security's PassphraseCipher, where every primitive lives.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from app.core.security import PassphraseCipher, random_bytes

MAGIC = b"GATEHOUSE-ENC1\n"
SALT_BYTES, PREFIX_BYTES, CHECK_BYTES = 16, 4, PassphraseCipher.CHECK_BYTES
HEADER_BYTES = len(MAGIC) + SALT_BYTES + PREFIX_BYTES + CHECK_BYTES
CHUNK_BYTES = 64 * 1024
TAG_BYTES = PassphraseCipher.TAG_BYTES


class SealedError(Exception):
    """The stream cannot be opened: wrong passphrase, altered, truncated or not sealed.
    `offset` is the byte of the sealed file where the problem was found."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def is_sealed(start: bytes) -> bool:
    """Whether a file starting with `start` (at least len(MAGIC) bytes) is sealed."""
    return start.startswith(MAGIC)


def _associated(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, int(final))


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">Q", index)


class SealedWriter:
    """A write-only binary file that seals what it is given into `out`; `close()` seals
    the final chunk (required: a file without it reads as truncated). `out` stays open."""

    def __init__(self, out: BinaryIO, passphrase: str) -> None:
        if not passphrase:
            raise ValueError("an empty passphrase protects nothing")
        salt, prefix = random_bytes(SALT_BYTES), random_bytes(PREFIX_BYTES)
        self._cipher = PassphraseCipher(passphrase, salt)
        self._header = MAGIC + salt + prefix + self._cipher.check
        self._prefix = prefix
        self._out = out
        self._buffer = bytearray()
        self._index = 0
        self.closed = False
        out.write(self._header)

    def writable(self) -> bool:
        return True

    def _seal(self, data: bytes, final: bool) -> None:
        sealed = self._cipher.seal(
            _nonce(self._prefix, self._index), data, _associated(self._header, self._index, final)
        )
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("write to a closed sealed stream")
        self._buffer += data
        # Keep at least one byte back: the last chunk must be sealed as final at close().
        while len(self._buffer) > CHUNK_BYTES:
            self._seal(bytes(self._buffer[:CHUNK_BYTES]), final=False)
            del self._buffer[:CHUNK_BYTES]
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), final=True)
            self._buffer.clear()
            self.closed = True
            self._out.flush()


class SealedReader:
    """A read-only binary file over a sealed stream; raises SealedError on a wrong
    passphrase (at construction), and on an altered or truncated file (while reading)."""

    def __init__(self, stream: BinaryIO, passphrase: str) -> None:
        self._stream = stream
        header = _read_exactly(stream, HEADER_BYTES)
        if len(header) < HEADER_BYTES or not is_sealed(header):
            raise SealedError("not an encrypted Gatehouse file, or cut in its header", 0)
        salt = header[len(MAGIC) : len(MAGIC) + SALT_BYTES]
        self._prefix = header[len(MAGIC) + SALT_BYTES : len(MAGIC) + SALT_BYTES + PREFIX_BYTES]
        self._cipher = PassphraseCipher(passphrase, salt)
        if not self._cipher.check_matches(header[-CHECK_BYTES:]):
            raise SealedError("wrong passphrase", len(MAGIC) + SALT_BYTES + PREFIX_BYTES)
        self._header = header
        self._offset = HEADER_BYTES
        self._index = 0
        self._done = False
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bytes:
        start = self._offset
        length_bytes = _read_exactly(self._stream, 4)
        if not length_bytes:
            raise SealedError("the encrypted file is truncated (its last chunk is missing)", start)
        (length,) = struct.unpack(">I", length_bytes.rjust(4, b"\0"))
        if len(length_bytes) < 4 or not TAG_BYTES <= length <= CHUNK_BYTES + TAG_BYTES:
            raise SealedError("the encrypted file is damaged or truncated", start)
        sealed = _read_exactly(self._stream, length)
        if len(sealed) < length:
            raise SealedError("the encrypted file is truncated", start)
        self._offset += 4 + length
        nonce = _nonce(self._prefix, self._index)
        for final in (False, True):
            data = self._cipher.unseal(nonce, sealed, _associated(self._header, self._index, final))
            if data is None:
                continue
            self._index += 1
            if final:
                self._done = True
                if self._stream.read(1):
                    raise SealedError("data follows the end of the encrypted file", self._offset)
            return data
        raise SealedError("the encrypted file was altered (a chunk failed authentication)", start)

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            self._buffer += self._next_chunk()
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    @property
    def offset(self) -> int:
        """Bytes of the sealed file consumed so far."""
        return self._offset


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    parts, missing = [], size
    while missing:
        piece = stream.read(missing)
        if not piece:
            break
        parts.append(piece)
        missing -= len(piece)
    return b"".join(parts)
