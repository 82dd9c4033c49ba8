"""Start-up of every process (API, worker, beat, CLI): the configuration parses and the
key ring opens the instance's data, or the process stops with one line naming the
variable and a non-zero status — never a traceback."""

from __future__ import annotations

import logging
import sys

from flask import Flask
from sqlalchemy.exc import DBAPIError

from app import create_app, encryption
from app.core.db import db
from config import ConfigError

# Gunicorn's "App failed to load": its master stops instead of restarting workers forever.
EXIT_STATUS = 4
log = logging.getLogger(__name__)


def prove_key_ring(app: Flask) -> None:
    """ConfigError when ENCRYPTION_KEYS cannot open the current signing key. A database
    that cannot be asked yet (down, empty before the first `db upgrade`) is no error here:
    /readyz asks again."""
    with app.app_context():
        try:
            problem = encryption.current_signing_key_problem()
        except DBAPIError as exc:
            db.session.rollback()
            log.debug("key ring not checked at start-up: %s", type(exc).__name__)
            problem = None
        finally:
            db.session.remove()
            # No pooled connection may survive into forked workers (gunicorn --preload,
            # Celery's prefork pool).
            db.engine.dispose()
    if problem:
        raise ConfigError(problem)


def checked_app() -> Flask:
    """The app of this process, or exit with `ConfigError: <one line>` on stderr."""
    try:
        app = create_app()
        prove_key_ring(app)
    except ConfigError as exc:
        print(f"ConfigError: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STATUS) from None
    return app
