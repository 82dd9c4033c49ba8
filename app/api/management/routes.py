"""Routes of the management surface for users: search and list, create, read, update,
delete, and look up by email."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.api.auth import current_principal, requires
from app.api.management import blp
from app.api.management.query import field_selection, parse_sort
from app.api.management.schemas import (
    PAGE_FIELDS,
    USER_FIELDS,
    CreateUserSchema,
    FieldsQuerySchema,
    ListUsersQuerySchema,
    UpdateUserSchema,
    UserPageSchema,
    UsersByEmailQuerySchema,
    UserSchema,
)
from app.core.pagination import OffsetPage
from app.core.smorest import Dumped
from app.credentials import service as credential_service
from app.users import profile as profile_service
from app.users import search as search_service
from app.users import service as user_service

# Sent by Auth0 clients, meaningless here (one connection, no verification mail).
IGNORED_BODY_FIELDS = ("connection", "client_id", "verify_email")
USERS_ANSWER = {"oneOf": [UserPageSchema, {"type": "array", "items": UserSchema}]}


def answer(schema: ma.Schema, data: Any) -> Dumped:
    """`data` dumped by `schema`, built for this request (`fields` picks the properties);
    `@blp.response` sends it and documents the full schema."""
    return Dumped(schema.dump(data))


def _nested(selection: dict[str, Any], key: str) -> dict[str, Any]:
    """A field selection for the objects inside a page's `key` list."""
    if "only" in selection:
        return {"only": PAGE_FIELDS + tuple(f"{key}.{name}" for name in selection["only"])}
    if "exclude" in selection:
        return {"exclude": tuple(f"{key}.{name}" for name in selection["exclude"])}
    return {}


def page_answer(
    found: OffsetPage[Any],
    *,
    key: str,
    page_schema: type[ma.Schema],
    item_schema: type[ma.Schema],
    selection: dict[str, Any],
    with_total: bool,
) -> Dumped:
    """Auth0's list answer: a bare array, or with totals `{start, limit, length, total,
    <key>: [...]}`."""
    if not with_total:
        return answer(item_schema(many=True, **selection), found.items)
    page = {
        "start": found.start,
        "limit": found.limit,
        "length": len(found.items),
        "total": found.total,
        key: found.items,
    }
    return answer(page_schema(**_nested(selection, key)), page)


def _body(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in IGNORED_BODY_FIELDS}


@blp.route("/api/v2/users", methods=["GET"])
@requires("read:users", user_arg=None)
@blp.arguments(ListUsersQuerySchema, location="query")
@blp.errors(400)
@blp.response(200, USERS_ANSWER)
def list_users(query: dict[str, Any]) -> Dumped:
    """List or search users (page, per_page, include_totals, q, sort, fields)"""
    paging = search_service.SearchPage(
        page=query["page"],
        per_page=query["per_page"],
        with_total=query["include_totals"],
        sort=parse_sort(query.get("sort")),
    )
    found = search_service.search_users(query=search_service.parse_q(query.get("q")), paging=paging)
    return page_answer(
        found,
        key="users",
        page_schema=UserPageSchema,
        item_schema=UserSchema,
        selection=field_selection(query.get("fields"), query["include_fields"], USER_FIELDS),
        with_total=query["include_totals"],
    )


@blp.route("/api/v2/users", methods=["POST"])
@requires("create:users", user_arg=None)
@blp.arguments(CreateUserSchema)
@blp.errors(400, 409, 413, 415)
@blp.response(201, UserSchema)
def create_user(body: dict[str, Any]) -> Any:
    """Create a user"""
    fields = _body(body)
    return profile_service.create_user(
        actor=current_principal(), user_id=fields.pop("user_id", None), **fields
    )


@blp.route("/api/v2/users/<user_id>", methods=["GET"])
@requires("read:users", "read:current_user")
@blp.arguments(FieldsQuerySchema, location="query")
@blp.errors(400, 404)
@blp.response(200, UserSchema)
def get_user(query: dict[str, Any], user_id: str) -> Dumped:
    """Get a user"""
    selection = field_selection(query.get("fields"), query["include_fields"], USER_FIELDS)
    return answer(UserSchema(**selection), user_service.get_user(user_id))


@blp.route("/api/v2/users/<user_id>", methods=["PATCH"])
@requires("update:users", "update:current_user_metadata")
@blp.arguments(UpdateUserSchema)
@blp.errors(400, 404, 409, 413, 415)
@blp.response(200, UserSchema)
def update_user(body: dict[str, Any], user_id: str) -> Any:
    """Update a user (metadata merged one level deep; other properties replaced)"""
    return credential_service.update_account(
        actor=current_principal(), user=user_service.get_user(user_id), changes=_body(body)
    )


@blp.route("/api/v2/users/<user_id>", methods=["DELETE"])
@requires("delete:users")
@blp.errors(404)
@blp.response(204)
def delete_user(user_id: str) -> None:
    """Delete a user"""
    user_service.delete_user(actor=current_principal(), user=user_service.get_user(user_id))


@blp.route("/api/v2/users-by-email", methods=["GET"])
@requires("read:users", user_arg=None)
@blp.arguments(UsersByEmailQuerySchema, location="query")
@blp.errors(400)
@blp.response(200, UserSchema(many=True))
def users_by_email(query: dict[str, Any]) -> Dumped:
    """Find users by email (case-insensitive)"""
    selection = field_selection(query.get("fields"), query["include_fields"], USER_FIELDS)
    return answer(UserSchema(many=True, **selection), user_service.find_by_email(query["email"]))
