"""Configuration: production refuses missing secrets; development generates them once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import Config, ConfigError, normalize_database_url

PROD_BASE = {
    "APP_ENV": "production",
    "DATABASE_URL": "postgresql://db/gatehouse",
    "SECRET_KEY": "s" * 40,
    "ENCRYPTION_KEYS": "A" * 43,
}


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL"])
def test_production_refuses_a_missing_secret(missing: str, tmp_path: Path) -> None:
    environ = {**PROD_BASE, "INSTANCE_PATH": str(tmp_path)}
    del environ[missing]
    with pytest.raises(ConfigError, match=missing):
        Config(environ)
    assert not (tmp_path / "secrets.json").exists()


def test_production_with_everything_starts(tmp_path: Path) -> None:
    config = Config({**PROD_BASE, "INSTANCE_PATH": str(tmp_path)})
    assert config.SECRET_KEY == "s" * 40
    assert config.ENCRYPTION_KEYS == ["A" * 43]
    assert config.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://db/gatehouse"
    assert not (tmp_path / "secrets.json").exists()


def test_development_generates_secrets_once(tmp_path: Path) -> None:
    first = Config({"APP_ENV": "development", "INSTANCE_PATH": str(tmp_path)})
    second = Config({"APP_ENV": "development", "INSTANCE_PATH": str(tmp_path)})
    stored = json.loads((tmp_path / "secrets.json").read_text())
    assert first.SECRET_KEY == second.SECRET_KEY == stored["SECRET_KEY"]
    assert first.ENCRYPTION_KEYS == second.ENCRYPTION_KEYS == [stored["ENCRYPTION_KEYS"]]
    assert first.ROOT_API_KEY == second.ROOT_API_KEY == stored["ROOT_API_KEY"]
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0
    assert first.SQLALCHEMY_DATABASE_URI == f"sqlite:///{tmp_path / 'gatehouse.db'}"
    assert first.CELERY_TASK_ALWAYS_EAGER is True


def test_explicit_values_win_over_generated(tmp_path: Path) -> None:
    config = Config(
        {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "mine", "ENCRYPTION_KEYS": "k1, k2"}
    )
    assert config.SECRET_KEY == "mine"
    assert config.ENCRYPTION_KEYS == ["k1", "k2"]


def test_broker_defaults_to_redis_url(tmp_path: Path) -> None:
    config = Config({"INSTANCE_PATH": str(tmp_path), "REDIS_URL": "redis://r:6379/0"})
    assert config.CELERY_BROKER_URL == "redis://r:6379/0"
    assert config.CELERY_TASK_ALWAYS_EAGER is False
    own = Config(
        {
            "INSTANCE_PATH": str(tmp_path),
            "REDIS_URL": "redis://r:6379/0",
            "CELERY_BROKER_URL": "redis://b:6379/1",
        }
    )
    assert own.CELERY_BROKER_URL == "redis://b:6379/1"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_driver_is_picked(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_bad_values_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ACCESS_TOKEN_TTL"):
        Config({"INSTANCE_PATH": str(tmp_path), "ACCESS_TOKEN_TTL": "soon"})
    with pytest.raises(ConfigError, match="APP_ENV"):
        Config({"INSTANCE_PATH": str(tmp_path), "APP_ENV": "staging"})


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import config as config_module

    (tmp_path / ".env").write_text(f"INSTANCE_PATH={tmp_path}\nISSUER=https://from-dotenv\n")
    monkeypatch.setattr(config_module, "PROJECT_ROOT", tmp_path)
    for name in ("ISSUER", "INSTANCE_PATH"):
        # set-then-delete makes monkeypatch restore the original after load_dotenv writes it
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    loaded = Config()
    assert loaded.ISSUER == "https://from-dotenv"


def test_empty_variables_keep_their_defaults(tmp_path: Path) -> None:
    config = Config({"INSTANCE_PATH": str(tmp_path), "LOG_LEVEL": "", "ISSUER": " ", "APP_ENV": ""})
    assert config.LOG_LEVEL == "INFO"
    assert config.ISSUER == "http://127.0.0.1:5000"
    assert config.APP_ENV == "development"


def test_a_malformed_encryption_key_stops_start_up(tmp_path: Path) -> None:
    from app import create_app

    config = Config({**PROD_BASE, "INSTANCE_PATH": str(tmp_path), "ENCRYPTION_KEYS": "too-short"})
    with pytest.raises(ConfigError, match="ENCRYPTION_KEYS"):
        create_app(config)
