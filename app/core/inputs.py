"""Bad input stopped at the edge: an over-long URL (414), a strict JSON parser (no
NaN/Infinity, bounded nesting) and one guard against text PostgreSQL cannot store (NUL, lone
surrogates) in the path, query, form, headers and every parsed JSON body.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider

from app.core.errors import Invalid, UriTooLong

# Deep enough for any real document (a property value, settings), shallow enough that no
# later recursion (marshmallow, the JSON encoder, PostgreSQL's jsonb) can overflow.
MAX_JSON_DEPTH = 64
INVALID_TEXT = "invalid_characters"
# The longest URL (path and query, as sent) answered: gunicorn's own default request-line
# limit was 4094 bytes, so no client relied on more. gunicorn.conf.py lets lines up to 8190
# bytes through, so that the app answers a longer URL itself, in the surface's JSON, instead
# of gunicorn's HTML page.
MAX_URL_BYTES = 4096


class BadJson(ValueError):
    """A body that parses but is refused (NaN, too deep, ...): callers treat it as bad JSON."""


class BadText(BadJson):
    """A JSON string or key with NUL or a lone surrogate."""


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: stored, it would come back as Infinity
        raise BadJson(f"{text[:20]} is out of range")
    return value


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text (NUL, unpaired surrogate), or None."""
    if "\x00" in value:
        return "NUL characters are not allowed"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Unpaired surrogates are not allowed"
    return None


def check_json_value(value: Any) -> None:
    """BadJson when `value` nests deeper than MAX_JSON_DEPTH or holds unstorable text.

    Iterative, so it cannot itself overflow the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise BadText(problem)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise BadJson(f"The JSON nests deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)


def loads_strict(data: str | bytes, **kwargs: Any) -> Any:
    """json.loads that refuses NaN/Infinity, overflowing floats, deep nesting and
    unstorable text; every refusal is a ValueError (BadJson or json's own)."""
    kwargs.setdefault("parse_constant", _refuse_constant)
    kwargs.setdefault("parse_float", _finite_float)
    try:
        value = json.loads(data, **kwargs)
    except RecursionError as exc:
        raise BadJson(f"The JSON nests deeper than {MAX_JSON_DEPTH} levels") from exc
    check_json_value(value)
    return value


class StrictJSONProvider(DefaultJSONProvider):
    """The app's JSON: `request.get_json()` and the argument parser both read through it."""

    sort_keys = False  # keep each document's field order

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_strict(s, **kwargs)


def refuse_unstorable_text() -> None:
    """Invalid (400) when the path, a query argument, a form field or a header holds text
    PostgreSQL cannot store; JSON bodies are checked as they are parsed."""
    candidates: list[str | None] = [request.path]
    for key, value in request.args.items(multi=True):
        candidates += (key, value)
    # The headers as the server put them in the environ (what request.headers reads, without
    # building its key for each one).
    for key, value in request.environ.items():
        if key.startswith("HTTP_") or key == "CONTENT_TYPE":
            candidates.append(value)
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for key, value in request.form.items(multi=True):
            candidates += (key, value)
    # One look at all of them (a NUL or a lone surrogate anywhere is found in the joined
    # text just the same): the common case, clean text, costs one scan, not one per value.
    # (None: a multipart part whose name werkzeug could not parse.)
    problem = text_problem("\n".join(value for value in candidates if value is not None))
    if problem:
        raise Invalid(problem, code=INVALID_TEXT)


def url_bytes(environ: dict[str, Any]) -> int:
    """The length of the URL as the client sent it (gunicorn and werkzeug keep it in
    RAW_URI / REQUEST_URI; otherwise path plus query)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is not None:
        return len(raw)
    query = environ.get("QUERY_STRING", "")
    return len(environ.get("PATH_INFO", "")) + (len(query) + 1 if query else 0)


def refuse_long_url() -> None:
    """UriTooLong (414) for a URL over MAX_URL_BYTES, on any path."""
    if url_bytes(request.environ) > MAX_URL_BYTES:
        raise UriTooLong(f"The URL is longer than {MAX_URL_BYTES} bytes")


def install_input_guards(app: Flask) -> None:
    """Strict JSON for the whole app; the URL length guard runs before every request, the
    text guard before every routed view."""
    app.json = StrictJSONProvider(app)
    app.before_request(refuse_long_url)

    @app.before_request
    def guard_text() -> None:
        if request.routing_exception is None:
            refuse_unstorable_text()
