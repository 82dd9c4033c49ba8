"""Application factory: configuration, extensions, surfaces, error handling and CLI."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from swagger_ui_bundle import swagger_ui_path
from werkzeug.middleware.proxy_fix import ProxyFix

from app import models  # noqa: F401  (every model registered on the metadata)
from app.core import sweeps
from app.core.db import db, install_pool_checks
from app.core.errors import register_error_handlers
from app.core.http import GatehouseFlask, StripTrailingSlash, install_http_hooks
from app.core.i18n import select_locale
from app.core.inputs import install_input_guards
from app.core.jobs import celery_init_app
from app.core.lazy_begin import install as begin_lazily
from app.core.logs import configure_logging
from app.core.metrics import add_gauge, install_request_metrics
from app.core.ratelimit import init_rate_limits
from app.core.redis_client import init_redis_client
from app.core.security import KeyRing, limit_hashing
from app.core.smorest import Api
from app.core.tenancy import install_tenancy_guards
from app.extensions import babel, migrate
from config import Config, ConfigError


def create_app(config: Config | None = None, **overrides: Any) -> Flask:
    """Build the Flask app from `config` (read from the environment when not given)."""
    config = config or Config()
    app = GatehouseFlask(__name__, instance_path=config.INSTANCE_PATH, static_folder=None)
    app.config.update(config.as_dict())
    app.config.update(overrides)
    _private_instance_files(app)
    configure_logging(app)
    limit_hashing(app.config["PASSWORD_HASH_CONCURRENCY"])
    try:
        app.extensions["gatehouse.keyring"] = KeyRing(app.config["ENCRYPTION_KEYS"])
    except ValueError as exc:
        raise ConfigError(f"ENCRYPTION_KEYS is not valid: {exc}") from exc

    db.init_app(app)
    _enable_sqlite_foreign_keys()
    install_pool_checks()
    with app.app_context():
        begin_lazily(db.engine)
    migrate.init_app(
        app,
        db,
        directory=str(Path(__file__).parent.parent / "migrations"),
        render_as_batch=True,
        compare_type=True,
    )
    install_tenancy_guards()
    babel.init_app(
        app, default_locale="en", default_domain="messages", locale_selector=select_locale
    )
    celery_init_app(app)
    init_rate_limits(app)
    init_redis_client(app)

    api = Api(app)  # one per app: flask-smorest keeps the app it documents
    api.register_security_schemes()
    from app.api import choose_renderer, register_pages, register_surfaces

    register_surfaces(api)
    register_pages(app)
    from app import encryption

    # /readyz also tells whether the key ring opens the data (a ring changed under a
    # running instance would otherwise only show as 500s).
    app.extensions["gatehouse.readiness"] = {"keyring": encryption.keyring_status}
    _add_row_gauges(app)
    _wire_webhooks()
    _serve_swagger_assets(app)
    install_request_metrics(app)  # first, so its clock starts before the other hooks
    install_http_hooks(app)
    install_input_guards(app)  # after the request id is set, so its 400s carry it
    register_error_handlers(app, choose_renderer)

    from app.cli import register_cli

    register_cli(app)
    if app.config["PROXY_FIX_X_FOR"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])  # type: ignore[method-assign]
    app.wsgi_app = StripTrailingSlash(app.wsgi_app)  # type: ignore[method-assign]
    return app


def _add_row_gauges(app: Flask) -> None:
    """Rows by state, all tenants together, counted by core.sweeps when /metrics is scraped."""
    from app.mail import service as mail_service
    from app.webhooks import delivery as webhook_delivery

    for name, documentation, declared in (
        ("gatehouse_mail_deliveries", "Email deliveries by state.", mail_service.BY_STATUS),
        ("gatehouse_webhook_messages", "Webhook messages by state.", webhook_delivery.BY_STATUS),
    ):
        add_gauge(app, name, documentation, "state", partial(sweeps.count, declared))


def _wire_webhooks() -> None:
    """Every audited change that is a webhook event writes its messages in the change's
    transaction; a body shows a user as the management surface does."""
    from app.api.management.schemas import UserSchema
    from app.audit import service as audit_service
    from app.webhooks import events

    audit_service.listen(events.on_audit_event)
    events.present_users_with(UserSchema().dump)


def _private_instance_files(app: Flask) -> None:
    """instance/ holds the development secrets, the SQLite database and mails with reset
    links: only the owner may read them (the folder 0700, the database file 0600; SQLite
    gives its journal files the database file's mode)."""
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    instance.chmod(0o700)
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database)
        database.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
        database.chmod(0o600)


def _serve_swagger_assets(app: Flask) -> None:
    """Swagger UI's files come from the installed package, never from a CDN."""
    from flask import Blueprint

    assets = Blueprint(
        "swagger_assets",
        __name__,
        static_folder=swagger_ui_path,
        static_url_path="/docs/static",
    )
    app.register_blueprint(assets)


def _sqlite_foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
    """SQLite ignores ON DELETE CASCADE unless asked per connection."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _enable_sqlite_foreign_keys() -> None:
    if not event.contains(Engine, "connect", _sqlite_foreign_keys_on):
        event.listen(Engine, "connect", _sqlite_foreign_keys_on)
