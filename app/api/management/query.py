"""Auth0's query parameters, parsed into the domain's typed search: `q` (a subset of its
Lucene syntax, parsed by app.users.search.parse_q, which the console's search shares),
`sort` (`field:1|-1`) and `fields`/`include_fields`.
"""

from __future__ import annotations

from typing import Any

from app.core.errors import Invalid
from app.users.search import SORT_FIELDS, Sort


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
