"""Round trips and statements of one request, counted on the wire: `bench/profile.py` prints
them beside the CPU split.

PostgreSQL: libpq's own protocol trace of every pooled connection the request checks out
(the prepared fast paths bypass SQLAlchemy's events, so counting at the driver is the only
count that sees them). A round trip is a `Sync` (the extended protocol: parse, bind,
execute, then wait) or a simple `Query` (psycopg's `BEGIN`/`COMMIT`); a statement is an
`Execute` or a simple `Query`. Redis: each packed send of redis-py's connections (a
pipeline's commands go in one).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# A message line of libpq's trace: its timestamp, who sent it (F: us, B: the server), its
# type and its fields; a statement's text may run on over further lines.
_LINE = re.compile(r"^(\S+ \S+)\t([FB])\t\d+\t(\w+)\t?(.*)$")
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


@dataclass
class Wire:
    """What one traced call sent: PostgreSQL round trips (each with the statements it
    carried) and Redis round trips."""

    postgres: list[list[str]] = field(default_factory=list)
    redis: int = 0

    @property
    def statements(self) -> int:
        return sum(len(trip) for trip in self.postgres)

    def describe(self) -> str:
        trips = ["; ".join(trip) or "(prepare)" for trip in self.postgres]
        lines = [
            f"{len(self.postgres)} PostgreSQL round trips, {self.statements} statements; "
            f"{self.redis} Redis round trips"
        ]
        lines += [f"      {n + 1:2d}. {trip}" for n, trip in enumerate(trips)]
        return "\n".join(lines)


def _head(statement: str) -> str:
    """A short name for a statement: its verb and table (`INSERT audit_event`), the tables
    of a data-modifying WITH."""
    text = " ".join(statement.split())
    verb = text.split(" ", 1)[0].upper()
    if verb == "WITH":
        verbs = re.findall(r"\b(INSERT INTO|UPDATE|DELETE FROM) (\w+)", text, re.I)
        return "WITH " + ", ".join(f"{v.split()[0].upper()} {t}" for v, t in verbs) + " …"
    if verb in ("INSERT", "UPDATE", "DELETE"):
        found = re.match(r"(?:INSERT INTO|UPDATE|DELETE FROM) (\w+)", text, re.I)
        return f"{verb} {found.group(1)}" if found else verb
    depth = 0  # a SELECT's own FROM, not one of a subquery among its columns
    for token in re.finditer(r"\(|\)|[\w.]+", text):
        word = token.group()
        depth += (word == "(") - (word == ")")
        if depth == 0 and word.upper() == "FROM":
            table = re.match(r"\s*([\w.]+)", text[token.end() :])
            return f"{verb} {table.group(1) if table else '?'}"
    return verb


def parse(trace: str, named: dict[str, str] | None = None) -> list[tuple[str, list[str]]]:
    """Round trips of one connection's libpq trace: (when it began, the statements it
    carried); `named` holds what the connection had prepared before the trace began."""
    messages: list[list[str]] = []
    for line in trace.splitlines():
        found = _LINE.match(line)
        if found:
            messages.append(list(found.groups()))
        elif messages:
            messages[-1][3] += "\n" + line
    named = dict(named or {})
    trips: list[tuple[str, list[str]]] = []
    current: list[str] = []
    began = ""
    bound = ""
    for moment, sender, kind, text in messages:
        if sender != "F":
            continue
        began = began or moment
        quoted = _QUOTED.findall(text)
        if kind == "Parse" and len(quoted) >= 2:
            named[quoted[0]] = quoted[1]
        elif kind == "Bind" and len(quoted) >= 2:
            bound = named.get(quoted[1], "?")
        elif kind == "Execute":
            current.append(_head(bound))
        elif kind in ("Sync", "Query"):
            if kind == "Query":
                current.append(_head(quoted[0] if quoted else text))
            trips.append((began, current))
            current, began = [], ""
    return trips


@contextmanager
def traced(engine: Any) -> Iterator[Wire]:
    """Trace every connection `engine` hands out, and Redis sends, until the block ends.
    Each connection traces to a file of its own (a prepared statement's name is the
    connection's own); their round trips are merged in time order."""
    import psycopg
    import redis.connection
    from sqlalchemy import event

    wire = Wire()
    traces: list[tuple[Any, int, str, dict[str, str]]] = []
    idle = psycopg.pq.TransactionStatus.IDLE

    def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if any(traced is dbapi_connection for traced, *_ in traces):
            return
        # What psycopg prepared on earlier requests is bound by name only: read the
        # names' statements first (outside the trace; no transaction left open).
        before = dbapi_connection.info.transaction_status
        rows = dbapi_connection.execute("SELECT name, statement FROM pg_prepared_statements")
        prepared = dict(rows.fetchall())
        if before == idle and dbapi_connection.info.transaction_status != idle:
            dbapi_connection.rollback()
        handle, path = tempfile.mkstemp(suffix=".pqtrace")
        dbapi_connection.pgconn.trace(handle)
        traces.append((dbapi_connection, handle, path, prepared))

    original: Callable[..., Any] = redis.connection.AbstractConnection.send_packed_command

    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        wire.redis += 1
        return original(self, *args, **kwargs)

    event.listen(engine, "checkout", checkout)
    redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    try:
        yield wire
    finally:
        redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
        event.remove(engine, "checkout", checkout)
        trips: list[tuple[str, list[str]]] = []
        for connection, handle, path, prepared in traces:
            connection.pgconn.untrace()
            os.close(handle)
            with open(path, encoding="utf-8", errors="replace") as trace:
                trips += parse(trace.read(), prepared)
            os.unlink(path)
        wire.postgres = [statements for _began, statements in sorted(trips, key=lambda t: t[0])]
