"""Auth0's query parameters, parsed into the domain's typed search: `q` (a subset of its
Lucene syntax), `sort` (`field:1|-1`) and `fields`/`include_fields`.

`q` understood here: terms separated by spaces (or `AND`), all of which must match; a term
is `field:value`, `field:"quoted value"` or a bare value (matching email, username, name
or user_id); a value ending in `*` matches as a prefix. Fields: email, username, name,
user_id. Anything else (OR, NOT, ranges, other fields) is refused with 400.
"""

from __future__ import annotations

import re
from typing import Any

from app.core.errors import Invalid
from app.users.search import SEARCH_FIELDS, SORT_FIELDS, Sort, Term, UserQuery

MAX_TERMS = 10
_TERM = re.compile(
    r"""\s*(?:(?P<field>[A-Za-z_][A-Za-z0-9_.]*):)?"""
    r"""(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"()]+))"""
)
_RESERVED = frozenset({"OR", "NOT", "||", "&&", "TO"})


def _invalid(message: str) -> Invalid:
    return Invalid(message, code="invalid_query", fields={"q": [message]})


def parse_q(q: str | None) -> UserQuery:
    """The terms of `q`; Invalid (`invalid_query`) for syntax outside the subset."""
    if q is None or not q.strip():
        return UserQuery()
    terms: list[Term] = []
    position = 0
    while position < len(q):
        if not q[position:].strip():
            break
        match = _TERM.match(q, position)
        if match is None:
            raise _invalid(f"Cannot parse the query near {q[position : position + 20]!r}")
        position = match.end()
        if position < len(q) and not q[position].isspace():
            raise _invalid(f"Cannot parse the query near {q[match.start() : position + 1]!r}")
        field, quoted, bare = match.group("field"), match.group("quoted"), match.group("bare")
        if field is None and bare == "AND":
            continue
        if field is None and bare in _RESERVED:
            raise _invalid(f"{bare} is not supported: every term must match")
        if field is not None and field not in SEARCH_FIELDS:
            raise _invalid(f"Cannot search on {field!r}; use {', '.join(SEARCH_FIELDS)}")
        if quoted is not None:
            value, prefix = re.sub(r"\\(.)", r"\1", quoted), False
        else:
            value, prefix = bare.removesuffix("*"), bare.endswith("*")
            if "*" in value or "?" in value:
                raise _invalid("Wildcards are supported only at the end of a value")
        if not value:
            raise _invalid("Empty value in the query")
        terms.append(Term(value=value, field=field, prefix=prefix))
        if len(terms) > MAX_TERMS:
            raise _invalid(f"At most {MAX_TERMS} terms")
    return UserQuery(terms=tuple(terms))


def parse_sort(sort: str | None) -> Sort:
    """`field:1` (ascending) or `field:-1`; Invalid (`invalid_sort`) otherwise."""
    if not sort:
        return Sort()
    name, _, order = sort.partition(":")
    if name not in SORT_FIELDS or order not in ("1", "-1"):
        message = f"sort is field:1 or field:-1 with a field among {', '.join(SORT_FIELDS)}"
        raise Invalid(message, code="invalid_sort", fields={"sort": [message]})
    return Sort(field=name, descending=order == "-1")


def field_selection(
    fields: str | None, include_fields: bool, known: frozenset[str]
) -> dict[str, Any]:
    """marshmallow `only`/`exclude` for a comma-separated `fields` (unknown names are
    ignored, as Auth0 does)."""
    if not fields:
        return {}
    names = {name.strip() for name in fields.split(",")} & known
    if include_fields:
        return {"only": tuple(sorted(names))}
    return {"exclude": tuple(sorted(names))}
