"""Configuration: production refuses missing secrets; development generates them once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask

from config import Config, ConfigError, normalize_database_url
from tests import factories

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
    k1, k2 = "A" * 43, "B" * 43
    config = Config(
        {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "mine", "ENCRYPTION_KEYS": f"{k1}, {k2}"}
    )
    assert config.SECRET_KEY == "mine"
    assert config.ENCRYPTION_KEYS == [k1, k2]


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
    environ = {**PROD_BASE, "INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match="ENCRYPTION_KEYS key 2 of 2 is not valid") as caught:
        Config({**environ, "ENCRYPTION_KEYS": "A" * 43 + ",too-short"})
    assert "too-short" not in str(caught.value)  # a key is never echoed


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RATELIMIT_RESET_PER_IP", "", None),  # empty: the default applies
        ("RATELIMIT_RESET_PER_IP", "sometimes", "must be a rate limit like"),
        ("DATABASE_URL", "mysql://me:hunter2@db/gatehouse", "PostgreSQL or SQLite URL"),
        ("DATABASE_URL", "postgresql+asyncpg://db/gatehouse", "driver 'asyncpg'"),
        ("DATABASE_URL", "::nonsense::", "is not a database URL"),
        ("REFRESH_TOKEN_TTL", "0", "must be at least 1"),
        ("MAIL_MAX_ATTEMPTS", "-3", "must be at least 1"),
        ("IMPORT_STALE_SECONDS", "0", "must be at least 1"),
        ("PROXY_FIX_X_FOR", "one", "must be an integer"),
        ("REDIS_URL", "localhost:6379", "must be a URL starting with redis://"),
        ("REDIS_URL", "redis://:hunter2@", "must be a URL starting with redis://"),
        ("CELERY_BROKER_URL", "mq://broker:9092", "names no Celery broker transport"),
        ("CELERY_BROKER_URL", "kafka://broker:9092", "needs the kafka transport"),
        ("RATELIMIT_ENABLED", "ture", "must be true or false"),
        ("ISSUER", "gatehouse.example.com", "must be a URL starting with http://"),
        ("POSTMARK_API_URL", "ftp://pm", "must be a URL starting with http://"),
        ("LOG_FORMAT", "yaml", "must be one of text, json"),
        ("LOG_LEVEL", "LOUD", "must be one of DEBUG"),
        ("ENCRYPTION_KEYS", "not-a-key", "ENCRYPTION_KEYS key 1 of 1 is not valid"),
    ],
)
def test_every_setting_is_parsed_at_start_up(
    tmp_path: Path, variable: str, value: str, says: str | None
) -> None:
    environ = {"INSTANCE_PATH": str(tmp_path), variable: value}
    if says is None:
        Config(environ)
        return
    with pytest.raises(ConfigError) as caught:
        Config(environ)
    message = str(caught.value)
    assert variable in message and says in message, message
    assert "hunter2" not in message and "\n" not in message


def test_booleans_and_levels_take_their_usual_spellings(tmp_path: Path) -> None:
    base = {"INSTANCE_PATH": str(tmp_path)}
    assert Config({**base, "RATELIMIT_ENABLED": "off"}).RATELIMIT_ENABLED is False
    assert Config({**base, "RATELIMIT_ENABLED": "Yes"}).RATELIMIT_ENABLED is True
    assert Config({**base, "LOG_LEVEL": "debug"}).LOG_LEVEL == "DEBUG"
    assert Config({**base, "LOG_FORMAT": "JSON"}).LOG_FORMAT == "json"


def test_the_issuer_follows_the_development_address(tmp_path: Path) -> None:
    """Finding 4: `make run PORT=5088` issued tokens and discovery for :5000."""
    base = {"INSTANCE_PATH": str(tmp_path)}
    assert Config(base).ISSUER == "http://127.0.0.1:5000"
    served = {**base, "FLASK_RUN_HOST": "127.0.0.1", "FLASK_RUN_PORT": "5088"}
    assert Config(served).ISSUER == "http://127.0.0.1:5088"
    everywhere = {**base, "FLASK_RUN_HOST": "0.0.0.0", "FLASK_RUN_PORT": "8080"}
    assert Config(everywhere).ISSUER == "http://127.0.0.1:8080"
    assert Config({**served, "ISSUER": "https://id.example.com"}).ISSUER == (
        "https://id.example.com"
    )
    production = Config({**PROD_BASE, **served})
    assert production.ISSUER == "http://127.0.0.1:5000"  # production names it (README)


def test_the_sending_lease_outlasts_one_postmark_call(tmp_path: Path) -> None:
    base = {**PROD_BASE, "INSTANCE_PATH": str(tmp_path)}
    # Issue 22: by default the lease follows the send timeout, a few seconds over it (it
    # was a fixed 300 s, so a killed worker's mail waited 5 minutes).
    assert Config(base).MAIL_SENDING_LEASE_SECONDS == 10 + 5
    slow = Config({**base, "MAIL_TIMEOUT_SECONDS": "30", "MAIL_REQUEUE_AFTER_SECONDS": "5"})
    assert slow.MAIL_SENDING_LEASE_SECONDS == 35
    short = Config({**base, "MAIL_SENDING_LEASE_SECONDS": "8", "MAIL_TIMEOUT_SECONDS": "3"})
    assert short.MAIL_SENDING_LEASE_SECONDS == 8
    # A lease shorter than the call could hand a live, slow send to a second worker.
    clamped = Config({**base, "MAIL_SENDING_LEASE_SECONDS": "2", "MAIL_TIMEOUT_SECONDS": "10"})
    assert clamped.MAIL_SENDING_LEASE_SECONDS == 11


def test_postgresql_connections_give_up_instead_of_hanging(tmp_path: Path) -> None:
    config = Config({**PROD_BASE, "INSTANCE_PATH": str(tmp_path)})
    options = config.SQLALCHEMY_ENGINE_OPTIONS
    assert options["connect_args"] == {"connect_timeout": 5}
    assert options["pool_timeout"] == 5
    quick = Config({**PROD_BASE, "INSTANCE_PATH": str(tmp_path), "DATABASE_TIMEOUT_SECONDS": "3"})
    assert quick.SQLALCHEMY_ENGINE_OPTIONS["connect_args"] == {"connect_timeout": 3}
    # SQLite takes neither option.
    embedded = Config({"APP_ENV": "development", "INSTANCE_PATH": str(tmp_path)})
    assert "connect_args" not in embedded.SQLALCHEMY_ENGINE_OPTIONS
    assert "pool_timeout" not in embedded.SQLALCHEMY_ENGINE_OPTIONS


def test_production_refuses_a_short_secret_key(tmp_path: Path) -> None:
    """Issue 22: `APP_ENV=production SECRET_KEY=x` was accepted; it signs reset links."""
    base = {**PROD_BASE, "INSTANCE_PATH": str(tmp_path)}
    for short in ("x", "s" * 31):
        with pytest.raises(ConfigError, match=r"SECRET_KEY must be at least 32 bytes") as err:
            Config({**base, "SECRET_KEY": short})
        assert short not in str(err.value)  # the value itself is never echoed
    assert Config({**base, "SECRET_KEY": "s" * 32}).SECRET_KEY == "s" * 32


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgressql://me:hunter2@db.internal/gatehouse", "(did you mean postgresql://?)"),
        ("sqllite:///x.db", "(did you mean sqlite://?)"),
        ("postgresql+nosuchdriver://db/gatehouse", "which is not supported"),
    ],
)
def test_a_misspelt_database_url_is_one_line(tmp_path: Path, url: str, says: str) -> None:
    """Issue 22: `postgressql://` ended in a 50-line NoSuchModuleError traceback."""
    with pytest.raises(ConfigError) as err:
        Config({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": url})
    message = str(err.value)
    assert message.startswith("DATABASE_URL ") and says in message and "\n" not in message
    assert "hunter2" not in message


def test_a_relative_sqlite_path_is_under_the_instance_folder(tmp_path: Path) -> None:
    """Issue 22: `sqlite:///relative.db` was opened relative to the instance folder by
    Flask-SQLAlchemy but to the working directory by everything else."""
    config = Config({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": "sqlite:///relative.db"})
    assert config.SQLALCHEMY_DATABASE_URI == f"sqlite:///{tmp_path.resolve() / 'relative.db'}"
    nested = Config({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": "sqlite:///data/g.db"})
    assert nested.SQLALCHEMY_DATABASE_URI == f"sqlite:///{tmp_path.resolve() / 'data' / 'g.db'}"
    for kept in (f"sqlite:///{tmp_path / 'abs.db'}", "sqlite://", "sqlite:///:memory:"):
        assert (
            Config({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": kept}).SQLALCHEMY_DATABASE_URI
            == kept
        )


@pytest.mark.parametrize(
    ("issuer", "secure"),
    [
        ("https://id.example.com", True),
        ("http://id.example.com:8080", False),
        ("http://127.0.0.1:5000", False),
    ],
)
def test_the_sign_in_cookies_are_secure_when_the_issuer_is_https(
    tmp_path: Path, issuer: str, secure: bool
) -> None:
    """Issue 22: production marked the cookies Secure over an http issuer, and browsers
    dropped them: every sign-in through the page failed."""
    base = {"INSTANCE_PATH": str(tmp_path), "ISSUER": issuer}
    for app_env in ("development", "testing"):
        assert Config({**base, "APP_ENV": app_env}).LOGIN_COOKIE_SECURE is secure
    # An explicit setting still wins, either way.
    assert Config({**base, "LOGIN_COOKIE_SECURE": "false"}).LOGIN_COOKIE_SECURE is False
    assert Config({**base, "LOGIN_COOKIE_SECURE": "true"}).LOGIN_COOKIE_SECURE is True


@pytest.mark.parametrize(
    "issuer", ["http://id.example.com", "http://10.0.0.5:5000", "http://gatehouse.local"]
)
def test_production_refuses_an_http_issuer_off_loopback(tmp_path: Path, issuer: str) -> None:
    base = {**PROD_BASE, "INSTANCE_PATH": str(tmp_path), "ISSUER": issuer}
    with pytest.raises(ConfigError) as caught:
        Config(base)
    message = str(caught.value)
    assert "ISSUER" in message and "ALLOW_INSECURE_ISSUER=true" in message, message
    assert "\n" not in message
    # Said on purpose, it starts (its cookies are not Secure: a browser would drop them).
    intended = Config({**base, "ALLOW_INSECURE_ISSUER": "true"})
    assert intended.ISSUER == issuer and intended.LOGIN_COOKIE_SECURE is False


@pytest.mark.parametrize(
    "issuer",
    [
        "https://id.example.com",
        "http://127.0.0.1:5000",
        "http://127.8.0.1",
        "http://localhost:8000",
        "http://app.localhost",
        "http://[::1]:5000",
    ],
)
def test_production_accepts_https_and_loopback_issuers(tmp_path: Path, issuer: str) -> None:
    config = Config({**PROD_BASE, "INSTANCE_PATH": str(tmp_path), "ISSUER": issuer})
    assert config.ISSUER == issuer and config.ALLOW_INSECURE_ISSUER is False


def test_an_http_issuer_stops_a_production_start_with_one_line(app: Flask) -> None:
    env = factories.process_env(app, APP_ENV="production", ISSUER="http://id.example.com")
    result = factories.run_command(["flask", "--app", "wsgi", "tenants", "list"], env)

    output = result.stdout + result.stderr
    assert result.returncode == 4 and "Traceback" not in output, output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("ConfigError:")]
    assert "ISSUER http://id.example.com is plain http" in line


@pytest.mark.parametrize(
    ("issuer", "settings", "rp_id", "origins"),
    [
        ("https://auth.example.com", {}, "auth.example.com", ["https://auth.example.com"]),
        ("http://127.0.0.1:5000", {}, "localhost", ["http://localhost:5000"]),
        ("http://[::1]:8080", {}, "localhost", ["http://localhost:8080"]),
        (
            "http://10.0.0.5:5000",
            {
                "WEBAUTHN_RP_ID": "id.example",
                "WEBAUTHN_ORIGINS": "https://a.id.example, https://id.example/",
            },
            "id.example",
            ["https://a.id.example", "https://id.example"],
        ),
    ],
)
def test_passkey_relying_party_follows_the_issuer(
    tmp_path: Path, issuer: str, settings: dict[str, str], rp_id: str, origins: list[str]
) -> None:
    """WebAuthn refuses an IP-literal relying party: a loopback issuer is served as
    localhost by default; any other deployment at an IP names its host."""
    config = Config({"INSTANCE_PATH": str(tmp_path), "ISSUER": issuer, **settings})
    assert config.WEBAUTHN_RP_ID == rp_id
    assert config.WEBAUTHN_ORIGINS == origins
