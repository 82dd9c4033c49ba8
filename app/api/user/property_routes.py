"""Routes of the user surface for a user's properties (the user API): named JSON values."""

from __future__ import annotations

from typing import Any

from app.api.auth import requires
from app.api.etag import ETAG_HEADER, check_if_match, etag_headers
from app.api.fields import ListQuerySchema
from app.api.user import blp
from app.api.user.schemas import (
    CreatePropertySchema,
    PropertyPageSchema,
    PropertySchema,
    UpdatePropertySchema,
)
from app.core.pagination import Page
from app.properties import service as property_service
from app.properties.models import Property

READ = ("read:properties", "read:current_user_properties")
WRITE = ("write:properties", "write:current_user_properties")
Tagged = tuple[Property, int, dict[str, str]]


@blp.route("/user/<user_id>/properties", methods=["GET"])
@requires(*READ)
@blp.arguments(ListQuerySchema, location="query")
@blp.response(200, PropertyPageSchema)
def list_properties(query: dict[str, Any], user_id: str) -> Page[Property]:
    """List a user's properties"""
    return property_service.list_properties(user_id=user_id, **query)


@blp.route("/user/<user_id>/properties", methods=["POST"])
@requires(*WRITE)
@blp.arguments(CreatePropertySchema)
@blp.response(201, PropertySchema, headers=ETAG_HEADER)
@blp.errors(409)
def create_property(body: dict[str, Any], user_id: str) -> Tagged:
    """Create a property"""
    prop = property_service.create_property(user_id=user_id, name=body["name"], value=body["value"])
    return prop, 201, etag_headers(prop)


@blp.route("/user/<user_id>/properties/<property_id>", methods=["GET"])
@requires(*READ)
@blp.response(200, PropertySchema, headers=ETAG_HEADER)
def get_property(user_id: str, property_id: str) -> Tagged:
    """Get a property"""
    prop = property_service.get_property(user_id=user_id, property_id=property_id)
    return prop, 200, etag_headers(prop)


@blp.route("/user/<user_id>/properties/<property_id>", methods=["PUT"])
@requires(*WRITE)
@blp.arguments(UpdatePropertySchema)
@blp.response(200, PropertySchema, headers=ETAG_HEADER)
@blp.errors(409, 412)
def update_property(body: dict[str, Any], user_id: str, property_id: str) -> Tagged:
    """Replace a property's value (and optionally its name; honours If-Match)"""
    prop = property_service.get_property(user_id=user_id, property_id=property_id)
    check_if_match(prop)
    prop = property_service.update_property(prop=prop, changes=body)
    return prop, 200, etag_headers(prop)


@blp.route("/user/<user_id>/properties/<property_id>", methods=["DELETE"])
@requires(*WRITE)
@blp.response(204)
def delete_property(user_id: str, property_id: str) -> None:
    """Delete a property"""
    property_service.delete_property(user_id=user_id, property_id=property_id)
