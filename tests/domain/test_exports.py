"""Exports (issue 24): the Gatehouse full-fidelity file (written, read back, encrypted with
a passphrase, refused when altered) and its round trip into a second tenant."""

from __future__ import annotations

import gzip
import io
import json
import os
from typing import Any

import pytest

from app.core import sealed
from app.core.tenancy import tenant_scope
from app.credentials import foreign_hashes
from app.portability import gatehouse_format
from app.portability.records import FileError, Rejected, UserRecord
from tests import factories
from tests.export_support import (
    FOREIGN_PASSWORD,
    PASSPHRASE,
    POLICIES,
    PROFILE,
    make_rich_users,
)


def export(app, tenant_id: str, **options: Any) -> bytes:
    out = io.BytesIO()
    options.setdefault("include_password_hashes", False)
    options.setdefault("include_mfa_secrets", False)
    with app.app_context(), tenant_scope(tenant_id):
        gatehouse_format.write(out, **options)
    return out.getvalue()


def read_all(data: bytes, passphrase: str | None = None) -> list[UserRecord | Rejected]:
    return list(gatehouse_format.read(io.BytesIO(data), passphrase=passphrase))


def test_plain_export_holds_every_field_but_no_hash_or_secret(app, client, tenant):
    make_rich_users(app, client, tenant)
    data = export(app, tenant.id)
    lines = [json.loads(line) for line in data.splitlines()]
    header, *users, end = lines
    assert header["format"] == "gatehouse-users" and header["version"] == 1
    assert header["source_tenant"] == tenant.id
    assert header["includes"] == {"password_hashes": False, "mfa_secrets": False, "secrets": False}
    assert end == {"format": "gatehouse-users-end", "count": 2}
    assert [user["id"] for user in users] == ["old", "rich"]  # `linked` now lives in rich
    rich = users[1]
    assert {key: rich[key] for key in PROFILE} == PROFILE
    assert rich["policies"] == POLICIES
    assert rich["properties"] == {"shoe": {"size": 43}, "count": 7}
    assert [(i["provider"], i["user_id"]) for i in rich["identities"]] == [("gatehouse", "linked")]
    assert rich["device_credentials"][0]["device_id"] == "dev-1"
    assert "BEGIN PUBLIC KEY" in rich["device_credentials"][0]["value"]
    # No hash, no TOTP secret, no secret value, in any form (the header names the flags).
    body = data.split(b"\n", 1)[1]
    assert b"argon2" not in body and b"$gh-foreign$" not in body
    assert b"password_hash" not in body and b"totp_secret" not in body
    assert b"s3cr3t" not in body and b"secrets" not in body

    records = read_all(data)
    assert [r.user_id for r in records] == ["old", "rich"]
    record = records[1]
    assert isinstance(record, UserRecord)
    assert record.email == "rich@example.com" and record.username == "rich"
    assert record.profile["custom_scopes"] == PROFILE["custom_scopes"]
    assert record.password_hash is None and record.totp_secret is None and record.secrets is None
    assert record.profile["device_type"] == "ios" and record.profile["logins_count"] == 1
    assert record.extra["device_credentials"][0]["device_id"] == "dev-1"


def test_hashes_without_mfa_flag_carry_no_totp_secret(app, client, tenant):
    secrets = make_rich_users(app, client, tenant)
    data = export(app, tenant.id, include_password_hashes=True)
    assert b"$argon2id$" in data and b"$gh-foreign$md5$" in data
    assert secrets["totp"].encode() not in data and b"totp_secret" not in data
    old, rich = read_all(data)
    assert rich.password_hash.startswith("$argon2id$")
    assert foreign_hashes.verify(old.password_hash, FOREIGN_PASSWORD)


def test_mfa_secrets_and_user_secrets_need_a_passphrase(app, client, tenant):
    for flags in ({"include_mfa_secrets": True}, {"include_secrets": True}):
        with pytest.raises(gatehouse_format.ExportRefused, match="passphrase"):
            export(app, tenant.id, **flags)


def test_encrypted_export_reads_back_with_its_passphrase(app, client, tenant):
    secrets = make_rich_users(app, client, tenant)
    data = export(
        app, tenant.id, include_password_hashes=True, include_mfa_secrets=True,
        include_secrets=True, passphrase=PASSPHRASE, compress=True,
    )  # fmt: skip
    assert data.startswith(b"GATEHOUSE-ENC1\n")
    for clear in (b"rich@example.com", secrets["totp"].encode(), b"s3cr3t", b"argon2"):
        assert clear not in data
    old, rich = read_all(data, PASSPHRASE)
    assert rich.totp_secret == secrets["totp"] and old.totp_secret is None
    assert rich.secrets == {"api-token": "s3cr3t value"}
    assert rich.policies == POLICIES


def encrypted_sample(app, tenant) -> bytes:
    for number in range(3):
        factories.make_user(app, tenant.id, user_id=f"u{number}", email=f"u{number}@example.com")
    return export(app, tenant.id, include_mfa_secrets=True, passphrase=PASSPHRASE)


def file_error(data: bytes, passphrase: str | None = PASSPHRASE) -> FileError:
    with pytest.raises(FileError) as caught:
        read_all(data, passphrase)
    return caught.value


def test_encrypted_file_refuses_wrong_passphrase_tampering_and_truncation(app, tenant):
    data = encrypted_sample(app, tenant)
    assert [r.user_id for r in read_all(data, PASSPHRASE)] == ["u0", "u1", "u2"]

    assert "give its passphrase" in file_error(data, None).message
    assert "wrong passphrase" in file_error(data, "not the passphrase").message
    flipped = bytearray(data)
    flipped[len(data) - 20] ^= 0x01
    error = file_error(bytes(flipped))
    assert "altered" in error.message and error.offset > 0
    assert "truncated" in file_error(data[:-7]).message
    # Cut exactly at a chunk boundary (the final chunk dropped): still caught.
    assert "truncated" in file_error(data[: gatehouse_format.sealed.HEADER_BYTES]).message


def test_plain_file_bad_lines_are_rejected_and_a_cut_file_fails(app, tenant):
    factories.make_user(app, tenant.id, user_id="u1", email="u1@example.com")
    data = export(app, tenant.id)
    header, user, end = data.splitlines(keepends=True)
    bad = {"id": "u2", "email": 5, "password_hash": "md5:nothing", "totp_secret": "not base32!"}
    crafted = header + user + b"not json\n" + json.dumps(bad).encode() + b"\n"
    crafted += b'{"format": "gatehouse-users-end", "count": 3}\n'
    first, not_json, wrong = read_all(crafted)
    assert isinstance(first, UserRecord) and first.user_id == "u1"
    assert isinstance(not_json, Rejected) and not_json.errors[0]["code"] == "INVALID_FORMAT"
    assert isinstance(wrong, Rejected)
    assert {(e["code"], e["path"]) for e in wrong.errors} == {
        ("INVALID_TYPE", "email"),
        ("UNSUPPORTED_HASH", "password_hash"),
        ("INVALID_FORMAT", "totp_secret"),
    }
    assert "password_hash" not in wrong.shown and "totp_secret" not in wrong.shown

    assert "end line is missing" in file_error(header + user, None).message
    cut = file_error(header + user[:-10], None)
    assert "truncated" in cut.message and cut.offset == len(header)
    assert "Not a Gatehouse" in file_error(b'[{"email": "x@example.com"}]\n', None).message
    assert "gzip" in file_error(gzip.compress(data)[:-12], None).message
    assert [r.user_id for r in read_all(gzip.compress(data))] == ["u1"]


def test_a_deeply_nested_line_and_an_overlong_identity_are_per_user_errors(app, tenant):
    """A line nested past the JSON parser's recursion limit, and an identity field longer
    than its column, are rejected on their own: neither stops the file nor fails a batch."""
    factories.make_user(app, tenant.id, user_id="u1", email="u1@example.com")
    header, user, _end = export(app, tenant.id).splitlines(keepends=True)
    deep = b'{"id": "deep", "app_metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    long_identity = {
        "id": "u3",
        "email": "u3@example.com",
        "identities": [{"provider": "p" * 129, "user_id": "x", "connection": "c"}],
    }
    crafted = header + user + deep + json.dumps(long_identity).encode() + b"\n"
    crafted += b'{"format": "gatehouse-users-end", "count": 3}\n'
    first, nested, identity = read_all(crafted)
    assert isinstance(first, UserRecord)
    assert isinstance(nested, Rejected) and nested.errors[0]["code"] == "INVALID_FORMAT"
    assert isinstance(identity, Rejected)
    assert [(e["code"], e["path"]) for e in identity.errors] == [
        ("MAX_LENGTH", "identities.0.provider")
    ]


def sealed_chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    """A sealed file cut into its header and its chunks (each with its length prefix)."""
    header, rest, chunks = data[: sealed.HEADER_BYTES], data[sealed.HEADER_BYTES :], []
    while rest:
        length = int.from_bytes(rest[:4], "big")
        chunks.append(rest[: 4 + length])
        rest = rest[4 + length :]
    return header, chunks


def unseal(data: bytes, passphrase: str = PASSPHRASE) -> bytes:
    return sealed.SealedReader(io.BytesIO(data), passphrase).read()


def sealed_error(data: bytes) -> sealed.SealedError:
    with pytest.raises(sealed.SealedError) as caught:
        unseal(data)
    return caught.value


def test_sealed_stream_of_many_chunks_detects_reordering_and_cuts():
    plain = os.urandom(3 * sealed.CHUNK_BYTES + 1000)  # four chunks, the last one short
    out = io.BytesIO()
    writer = sealed.SealedWriter(out, PASSPHRASE)
    for start in range(0, len(plain), 10_000):  # written in pieces of any size
        writer.write(plain[start : start + 10_000])
    writer.close()
    data = out.getvalue()
    assert unseal(data) == plain
    header, chunks = sealed_chunks(data)
    assert len(chunks) == 4

    swapped = header + chunks[1] + chunks[0] + b"".join(chunks[2:])
    assert "altered" in sealed_error(swapped).message
    dropped_last = header + b"".join(chunks[:3])  # cut exactly at a chunk boundary
    assert "truncated" in sealed_error(dropped_last).message
    dropped_middle = header + chunks[0] + b"".join(chunks[2:])
    assert "altered" in sealed_error(dropped_middle).message
    assert "follows the end" in sealed_error(data + chunks[3]).message
    error = sealed_error(header + chunks[0] + chunks[1][:-5])
    assert "truncated" in error.message and error.offset == len(header) + len(chunks[0])
    # Another file's header (its salt, so its key) on these chunks: refused.
    other = io.BytesIO()
    sealed.SealedWriter(other, PASSPHRASE).close()
    foreign_header = other.getvalue()[: sealed.HEADER_BYTES]
    assert "altered" in sealed_error(foreign_header + b"".join(chunks)).message


def test_pages_cover_every_user_once_in_id_order(app, tenant, other_tenant):
    for user_id in ("e", "a", "d", "b", "c"):
        factories.make_user(app, tenant.id, user_id=user_id, email=f"{user_id}@example.com")
    factories.make_user(app, other_tenant.id, user_id="z", email="z@example.com")
    out = io.BytesIO()
    with app.app_context(), tenant_scope(tenant.id):
        count = gatehouse_format.write(
            out, include_password_hashes=False, include_mfa_secrets=False, page_size=2
        )
    assert count == 5
    assert [r.user_id for r in read_all(out.getvalue())] == ["a", "b", "c", "d", "e"]
