"""ETag / If-Match for versioned rows (users, secrets, properties): the tag is a digest of
the row's version."""

from __future__ import annotations

from typing import Any

from flask import request

from app.api.fields import entity_tag
from app.core.errors import PreconditionFailed


def check_if_match(row: Any) -> None:
    """PreconditionFailed when an If-Match header names another version of `row` (any
    versioned row: user, secret, property)."""
    wanted = request.headers.get("If-Match")
    if wanted is None:
        return
    current = entity_tag(row)
    tags = {tag.strip().removeprefix("W/").strip('"') for tag in wanted.split(",")}
    if "*" not in tags and current not in tags:
        raise PreconditionFailed(
            "The resource has changed since it was read (If-Match)", code="etag_mismatch"
        )


ETAG_HEADER = {
    "ETag": {
        "description": "The resource's version; send it back in If-Match to update safely",
        "schema": {"type": "string"},
    }
}


def etag_headers(row: Any) -> dict[str, str]:
    """Headers for a flask-smorest `(data, status, headers)` answer."""
    return {"ETag": f'"{entity_tag(row)}"'}
