"""PostgreSQL transactions begin at the first write, so a request that writes nothing pays
no BEGIN and no COMMIT round trip.

A connection leaves the pool in autocommit; the first statement that is not a plain
SELECT (an INSERT, UPDATE, DELETE, SAVEPOINT, a locking or advisory-lock SELECT, …) turns
autocommit off just before it runs, so psycopg opens the transaction right there and the
edge commits or rolls it back exactly as before. Reads that ran before it saw committed
data, which is also all they see inside a transaction under PostgreSQL's default READ
COMMITTED isolation (every statement takes its own snapshot), so moving BEGIN past them
changes no answer. A connection that asked for an isolation level of its own is left as
it is.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

# A read that must not leave the transaction: it takes locks that live until COMMIT.
_LOCKING = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+|KEY\s+)?(?:UPDATE|SHARE)\b|\bpg_(?:try_)?advisory|\bset_config\b",
    re.I,
)
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction is open


@lru_cache(maxsize=2048)  # statements are the compiled cache's strings: few and reused
def is_plain_read(statement: str) -> bool:
    """True for a SELECT that takes no row lock, advisory lock or transaction setting."""
    head = statement.lstrip()[:6]
    return head.upper() == "SELECT" and _LOCKING.search(statement) is None


def _autocommit_on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if not dbapi_connection.autocommit and dbapi_connection.info.transaction_status == _IDLE:
        dbapi_connection.autocommit = True


def _begin_before_write(
    conn: Connection,
    cursor: Any,
    statement: str,
    _parameters: Any,
    _context: Any,
    _executemany: bool,
) -> None:
    dbapi_connection = cursor.connection
    if not dbapi_connection.autocommit or is_plain_read(statement):
        return
    if "isolation_level" in conn.get_execution_options():
        return  # asked for autocommit (or another level) on purpose: not ours to change
    dbapi_connection.autocommit = False  # psycopg sends BEGIN before this statement


def install(engine: Engine) -> None:
    """Begin transactions lazily on `engine` (PostgreSQL through psycopg 3 only)."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return
    if not event.contains(engine, "checkout", _autocommit_on_checkout):
        event.listen(engine, "checkout", _autocommit_on_checkout)
        event.listen(engine, "before_cursor_execute", _begin_before_write)
