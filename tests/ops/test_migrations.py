"""The migrations build exactly the schema the models describe, on PostgreSQL and SQLite."""

from __future__ import annotations

from pathlib import Path

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from app import create_app
from app.core.db import db
from tests.conftest import make_config


def _diff(app: Flask) -> list[object]:
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, db.metadata))


def test_models_and_migrations_agree_on_postgres(app: Flask) -> None:
    assert _diff(app) == []


def test_migrations_run_on_sqlite_and_agree(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    app = create_app(make_config(url, tmp_path))
    with app.app_context():
        flask_migrate.upgrade()
    assert _diff(app) == []
    with app.app_context():
        flask_migrate.downgrade(revision="base")
        tables = db.inspect(db.engine).get_table_names()
    assert set(tables) <= {"alembic_version"}
