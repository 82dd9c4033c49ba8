"""CSV answers safe to open in a spreadsheet: a cell a spreadsheet would read as a formula
(starting with =, +, -, @, or a tab or carriage return that hides one) gets a leading `'`
(OWASP's CSV-injection advice); objects are written as JSON text."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """One cell's text: empty for None, JSON for a list or dict, `'`-prefixed when a
    spreadsheet would take it for a formula."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(header: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """A CSV document (RFC 4180: CRLF lines, quotes where needed) of `rows` under `header`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(row.get(name)) for name in header])
    return buffer.getvalue()
