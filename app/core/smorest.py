"""flask-smorest subclasses: 400 (not 422) for validation errors, a strict JSON body parser,
error rendering left to core.errors, and an OpenAPI document that tells the truth.

Every operation of a surface's Blueprint is documented with:
- the surface's own error schema (`Blueprint(..., error_schema=...)`) for each error status
  it can answer: the common ones are added here, route-specific ones come from
  `@blp.errors(409, ...)`;
- its security and tenant-header parameters, from the metadata the auth decorators leave
  on the view (`document_auth`), or `@blp.tenant_header` for public views that read it.

Answers that are not JSON go through `@blp.response` too: with a non-JSON `content_type`,
a view returns its body as str/bytes and the Blueprint builds the answer in that type. A
view whose schema depends on the request (a field selection) returns `Dumped(...)`, which
`@blp.response` sends as it is while documenting the status's full schema.
"""

from __future__ import annotations

import http
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import flask_smorest
import marshmallow as ma
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask, Response, current_app
from flask_smorest.utils import unpack_tuple_response
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.datastructures import CombinedMultiDict

from app.core.errors import Invalid
from app.core.inputs import INVALID_TEXT, BadText

F = TypeVar("F", bound=Callable[..., Any])
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
# flask-smorest keys a request body's content type by location; this one stands for both.
_JSON_OR_FORM = "application/json|application/x-www-form-urlencoded"
TENANT_HEADERS = ("X-Tenant-ID", "x-m2-organization-id")
_BODY_METHODS = frozenset({"post", "put", "patch", "delete"})
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": "The authentication scheme to use (`Bearer`, or `Basic`)"},
    405: {"Allow": "The methods the path answers"},
    429: {"Retry-After": "Seconds to wait before trying again"},
}


class Parser(FlaskParser):
    """webargs' parser with validation errors at 400 and JSON read through the app's
    strict JSON provider (so NaN, deep nesting or NUL are a 400, never a 500).

    A schema may set `EMPTY_BODY_CODE` to answer a missing body with that error code
    instead of validating an empty object (the me surface's NO_BODY_GIVEN)."""

    DEFAULT_VALIDATION_STATUS = 400
    # `multipart`: a multipart/form-data body's fields and files read by one schema, so
    # the document shows one request body with both (smorest documents only one of `form`
    # and `files` when a view takes both).
    __location_map__ = {**FlaskParser.__location_map__, "multipart": "load_multipart"}

    def load_multipart(self, req: Any, schema: ma.Schema) -> Any:
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)

    def load_json(self, req: Any, schema: ma.Schema) -> Any:
        if is_json_request(req):
            raw = req.get_data(cache=True)
            if raw.strip():
                return _parse_json(raw)
        elif req.content_length:
            return webargs_core.missing  # a form body: json_or_form reads it next
        code = getattr(schema, "EMPTY_BODY_CODE", None)
        if code:
            raise Invalid("The request did not include a body", code=code)
        return webargs_core.missing


def _parse_json(raw: bytes) -> Any:
    try:
        return current_app.json.loads(raw)
    except BadText as exc:
        raise Invalid(str(exc), code=INVALID_TEXT) from exc
    except ValueError as exc:  # malformed, NaN/Infinity, too deep, a 5000-digit number
        message = f"The body is not valid JSON: {_first_line(exc)}"
        raise Invalid(message, code="invalid_json") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


@dataclass(frozen=True)
class AuthDoc:
    """What an auth decorator accepts, for the document: any one of `schemes`; whether the
    tenant header applies; the statuses the check itself can answer."""

    schemes: tuple[str, ...]
    tenant_header: bool
    statuses: tuple[int, ...]
    scopes: tuple[str, ...] = ()


API_KEY_SCHEMES = ("ApiKey", "ApiKeyLower", "Bearer")
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-APIKEY"},
    "ApiKeyLower": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A user's access token, or an API key sent as a bearer token",
    },
    "ClientBasic": {
        "type": "http",
        "scheme": "basic",
        "description": (
            "OAuth client authentication: the API key's id and the API key, or a "
            "confidential application's client_id and client_secret"
        ),
    },
}


def document_auth(view: F, auth: AuthDoc) -> F:
    """Leave `auth` on `view` for the document (called by the auth decorators).
    functools.wraps shares the inner view's `_apidoc`, so it is copied, never mutated."""
    return _set_doc(view, "auth", auth)


def _set_doc(view: F, key: str, value: Any) -> F:
    apidoc = deepcopy(getattr(view, "_apidoc", {}))
    apidoc[key] = value
    view._apidoc = apidoc  # type: ignore[attr-defined]
    return view


_TENANT_WITH_KEY = (
    "The tenant (either header name). Optional with a tenant's API key or a user token, "
    "where it must name their tenant (else 403); required with the root key."
)


def _tenant_parameters(description: str) -> list[dict[str, Any]]:
    return [
        {
            "in": "header",
            "name": name,
            "required": False,
            "schema": {"type": "string", "maxLength": 128},
            "description": description,
        }
        for name in TENANT_HEADERS
    ]


IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": "Only apply the change if the resource still has this ETag (else 412)",
}


@dataclass(frozen=True)
class Dumped:
    """An answer already dumped by a schema the view built for this request (the
    management surface's `fields`/`include_fields` pick the properties): `@blp.response`
    sends it as it is, and documents the status's full schema, of which it is a part."""

    data: Any


class _PassDumped:
    """What `@blp.response` dumps with at run time: the documented schema, except for a
    `Dumped` answer, which it passes through (see `Blueprint._make_doc_response_schema`)."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema

    def dump(self, obj: Any) -> Any:
        if isinstance(obj, Dumped):
            return obj.data
        return self.schema.dump(obj)


class Blueprint(flask_smorest.Blueprint):
    """A surface: its routes, and the schema of the errors it renders."""

    ARGUMENTS_PARSER = Parser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "json_or_form": _JSON_OR_FORM,
        "multipart": MULTIPART,
    }

    def __init__(self, *args: Any, error_schema: type[ma.Schema], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.error_schema = error_schema
        self._prepare_doc_cbks.append(self._prepare_surface_doc)

    def response(
        self,
        status_code: int,
        schema: Any = None,
        *,
        content_type: str | None = None,
        **kwargs: Any,
    ) -> Callable[[F], F]:
        """flask-smorest's `response`, with two additions.

        A JSON answer may be `Dumped(data)`, sent as it is (the view dumped it with a
        schema built for this request); anything else is dumped by `schema` as usual.

        smorest answers JSON only: with a non-JSON `content_type` the view returns its
        body (str or bytes, optionally in a `(body, status, headers)` tuple) and gets an
        answer of that type, so the documented type and the served one are one value. A
        header of the tuple (Content-Type) still wins, and a `Response` (a stream) passes
        through untouched."""
        if content_type is None or _is_json(content_type):
            if schema is not None:
                schema = _PassDumped(schema() if isinstance(schema, type) else schema)
            return super().response(status_code, schema, content_type=content_type, **kwargs)
        document = super().response(status_code, schema, content_type=content_type, **kwargs)

        def decorate(view: F) -> F:
            @wraps(view)
            def as_typed_body(*args: Any, **view_kwargs: Any) -> Any:
                body, status, headers = unpack_tuple_response(
                    current_app.ensure_sync(view)(*args, **view_kwargs)
                )
                if not isinstance(body, str | bytes):
                    return body, status, headers
                response = _typed_response(body, content_type)
                if headers:
                    response.headers.update(headers)  # replaces, where smorest would add
                return response, status

            return document(as_typed_body)  # type: ignore[arg-type]

        return decorate

    def arguments(self, schema: Any, **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's `arguments`, given a schema instance made once: webargs makes a
        new instance of a schema class on every request (copying its fields), which cost a
        body-taking request ≈0.1 ms. The schemas keep no state between loads."""
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, **kwargs)

    @staticmethod
    def _make_doc_response_schema(schema: Any) -> Any:
        """smorest's hook for the documented schema: the one `_PassDumped` dumps with."""
        return schema.schema if isinstance(schema, _PassDumped) else schema

    @staticmethod
    def errors(*statuses: int) -> Callable[[F], F]:
        """Document statuses a route answers besides the common ones (409, 412, 429, ...),
        in the surface's error schema. 412 also documents the If-Match header."""

        def decorate(view: F) -> F:
            known = set(getattr(view, "_apidoc", {}).get("errors", ()))
            return _set_doc(view, "errors", known | set(statuses))

        return decorate

    @staticmethod
    def tenant_header(description: str) -> Callable[[F], F]:
        """Document the tenant headers on a public view that reads them (`description`
        says when they are needed)."""
        return lambda view: _set_doc(view, "tenant_header", description)

    def _error_response(self, status: int) -> dict[str, Any]:
        response: dict[str, Any] = {
            "description": http.HTTPStatus(status).phrase,
            "content": {JSON: {"schema": self.error_schema}},
        }
        if status in _ERROR_HEADERS:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in _ERROR_HEADERS[status].items()
            }
        return response

    def _prepare_surface_doc(
        self, doc: dict[str, Any], doc_info: dict[str, Any], *, method: str, **_: Any
    ) -> dict[str, Any]:
        auth: AuthDoc | None = doc_info.get("auth")
        # 414: every operation refuses a URL over core.inputs.MAX_URL_BYTES.
        statuses = {400, 414, 500} | set(doc_info.get("errors", ()))
        parameters = doc.setdefault("parameters", [])
        if auth is not None:
            doc["security"] = [{scheme: []} for scheme in auth.schemes]
            statuses |= set(auth.statuses)
            if auth.scopes:
                doc["x-scopes"] = list(auth.scopes)
        else:
            doc["security"] = []
        tenant_doc = doc_info.get("tenant_header") or (
            auth and auth.tenant_header and _TENANT_WITH_KEY
        )
        if tenant_doc:
            parameters.extend(_tenant_parameters(tenant_doc))
            statuses.add(403)  # the two tenant headers disagree
        if 412 in statuses:
            parameters.append(dict(IF_MATCH))
        if method in _BODY_METHODS:
            statuses.add(415)
            if "requestBody" in doc:
                statuses.add(413)
        if not parameters:
            del doc["parameters"]
        self._split_json_or_form(doc)
        responses = {int(status): value for status, value in doc.get("responses", {}).items()}
        for status in statuses:
            if not isinstance(responses.get(status, ""), dict):  # absent, or smorest's default
                responses[status] = self._error_response(status)
        doc["responses"] = {status: responses[status] for status in sorted(responses)}
        return doc

    @staticmethod
    def _split_json_or_form(doc: dict[str, Any]) -> None:
        content = doc.get("requestBody", {}).get("content", {})
        if _JSON_OR_FORM in content:
            media = content.pop(_JSON_OR_FORM)
            content[FORM] = media
            content[JSON] = deepcopy(media)


def _typed_response(body: str | bytes, content_type: str) -> Response:
    # A bare text type gets werkzeug's charset (text/plain; charset=utf-8); a full content
    # type, parameters and all (Prometheus'), is sent as written.
    if ";" in content_type:
        return Response(body, content_type=content_type)
    return Response(body, mimetype=content_type)


def _is_json(content_type: str) -> bool:
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == JSON or mimetype.endswith("+json")


def schema_name(schema: type[ma.Schema]) -> str:
    """OpenAPI component names carry the surface (`directory.Policy`), since several
    surfaces present the same object in their own shape."""
    resolved = resolve_schema_cls(schema)
    schema_cls = resolved[0] if isinstance(resolved, list) else resolved
    name = schema_cls.__name__.removesuffix("Schema") or schema_cls.__name__
    parts = schema_cls.__module__.split(".")
    surface = parts[2] if len(parts) > 2 and parts[:2] == ["app", "api"] else "common"
    return f"{surface}.{name}"


class Api(flask_smorest.Api):
    # Errors are documented per operation in the surface's shape, never as smorest's
    # generic `default` error.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def __init__(self, app: Flask | None = None) -> None:
        super().__init__(
            app,
            spec_kwargs={"marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name)},
        )

    def init_app(self, app: Flask, *args: Any, **kwargs: Any) -> None:
        # Swagger UI keeps the credentials typed into "Authorize" across reloads.
        app.config.setdefault("OPENAPI_SWAGGER_UI_CONFIG", {"persistAuthorization": True})
        super().init_app(app, *args, **kwargs)

    def _register_error_handlers(self) -> None:
        """Errors are rendered by core.errors.register_error_handlers, per surface."""

    def _register_responses(self) -> None:
        """No generic error responses: each surface documents its own (see Blueprint)."""

    def _register_pagination_header(self) -> None:
        """Paging is by cursor (`next_cursor`, `Link`), not smorest's X-Pagination."""

    def register_security_schemes(self) -> None:
        """Describe the credentials every surface accepts in the OpenAPI document."""
        for name, scheme in SECURITY_SCHEMES.items():
            self.spec.components.security_scheme(name, scheme)
