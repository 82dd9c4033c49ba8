"""Start-up of every process (API, worker, beat, CLI): the configuration parses and the
key ring opens the instance's data, or the process stops with one line naming the
variable and a non-zero status — never a traceback. A database that cannot be reached is
one line too: logged by a server at start (it serves /healthz and answers 503 until the
database is back), and the error of a CLI command that needs it."""

from __future__ import annotations

import logging
import sys
from types import TracebackType

import click
from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from app import create_app, encryption
from app.core.db import db
from config import ConfigError

# Gunicorn's "App failed to load": its master stops instead of restarting workers forever.
EXIT_STATUS = 4
log = logging.getLogger(__name__)


def unreachable_database(url: str, exc: BaseException) -> str | None:
    """One line naming the database's host and why it cannot be reached, when `exc` is a
    failure to connect (not a failing statement); else None."""
    if not isinstance(exc, OperationalError | InterfaceError) or exc.statement is not None:
        return None
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        where = f"the SQLite file {parsed.database}"
    else:
        host = (parsed.host or "localhost") + (f":{parsed.port}" if parsed.port else "")
        where = f"the database {parsed.database or '(default)'} at {host}"
    return f"DATABASE_URL: cannot connect to {where}: {_reason(exc.orig or exc)}"


def _reason(error: BaseException) -> str:
    """libpq's own reason, without its hints: `connection to server at "h", port 1
    failed: Connection refused\\n\\tIs the server running…` → `Connection refused`."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    reason = first.rpartition(" failed: ")[2] or first
    return reason.removeprefix("FATAL:").strip()


_database_url: list[str] = []  # the URL the hook names (the latest app's), once installed


def _one_line_for_database_errors(app: Flask) -> None:
    """A CLI command whose database cannot be reached ends with one line and status 1,
    not a 150-line traceback (`flask db upgrade`, `flask tenants list`…); every other
    uncaught error keeps its traceback. Installed once per process."""
    first = not _database_url
    _database_url[:] = [app.config["SQLALCHEMY_DATABASE_URI"]]
    if not first:
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        line = unreachable_database(_database_url[0], exc)
        if line is None:
            previous(kind, exc, tb)
        else:
            click.echo(f"Error: {line}", err=True)

    sys.excepthook = hook


def prove_key_ring(app: Flask, *, serving: bool = False) -> None:
    """ConfigError when ENCRYPTION_KEYS cannot open the current signing key. A database
    that cannot be asked yet (down, empty before the first `db upgrade`) is no error here:
    /readyz asks again; a server says once, in one line, that it cannot reach it."""
    with app.app_context():
        try:
            problem = encryption.current_signing_key_problem()
        except DBAPIError as exc:
            db.session.rollback()
            line = unreachable_database(app.config["SQLALCHEMY_DATABASE_URI"], exc)
            if serving and line:
                log.warning("%s; serving anyway, /readyz answers 503 until it is back", line)
            else:
                log.debug("key ring not checked at start-up: %s", type(exc).__name__)
            problem = None
        finally:
            db.session.remove()
            # No pooled connection may survive into forked workers (gunicorn --preload,
            # Celery's prefork pool).
            db.engine.dispose()
    if problem:
        raise ConfigError(problem)


def flask_run_is_serving() -> bool:
    """True when this process is `flask run` loading the app (the command's own click
    context is current then); other commands load it while their name is resolved."""
    context = click.get_current_context(silent=True)
    return context is not None and context.info_name == "run"


def checked_app(*, serving: bool = False) -> Flask:
    """The app of this process, or exit with `ConfigError: <one line>` on stderr.
    `serving`: the process is a server starting (gunicorn's master, `flask run`)."""
    try:
        app = create_app()
        prove_key_ring(app, serving=serving)
    except ConfigError as exc:
        # The process's one line, not a log record (logging may not be set up yet, and a
        # record would carry a prefix); click.echo flushes it before the exit.
        click.echo(f"ConfigError: {exc}", err=True)
        raise SystemExit(EXIT_STATUS) from None
    _one_line_for_database_errors(app)
    return app
