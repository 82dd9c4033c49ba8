"""ETag / If-Match for user documents: the tag is the user's version digest."""

from __future__ import annotations

from flask import Response, request

from app.api.fields import entity_tag
from app.core.errors import PreconditionFailed
from app.users.models import User


def check_if_match(user: User) -> None:
    """PreconditionFailed when an If-Match header names another version of `user`."""
    wanted = request.headers.get("If-Match")
    if wanted is None:
        return
    current = entity_tag(user)
    tags = {tag.strip().removeprefix("W/").strip('"') for tag in wanted.split(",")}
    if "*" not in tags and current not in tags:
        raise PreconditionFailed("The user has changed since it was read", code="etag_mismatch")


def with_etag(response: Response, user: User) -> Response:
    response.set_etag(entity_tag(user))
    return response
