"""Configuration read from the environment (and a `.env` file), with typed defaults.

In development missing secrets are generated once into `instance/secrets.json`; in
production (`APP_ENV=production`) a missing one stops start-up with a clear message.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent
MIB = 1024 * 1024


class ConfigError(RuntimeError):
    """Raised when the configuration cannot start the service."""


def normalize_database_url(url: str) -> str:
    """Map `postgres://` / `postgresql://` to the installed driver; leave others alone."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if importlib.util.find_spec("psycopg") is not None:
                return "postgresql+psycopg://" + rest
            if importlib.util.find_spec("psycopg2") is not None:
                return "postgresql+psycopg2://" + rest
            raise ConfigError(
                "DATABASE_URL names PostgreSQL but neither psycopg nor psycopg2 is installed"
            )
    return url


def _new_encryption_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


_GENERATED_SECRETS = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(48),
    "ENCRYPTION_KEYS": _new_encryption_key,
    "ROOT_API_KEY": lambda: "gh_root_" + secrets.token_urlsafe(32),
}


def _dev_secrets(instance_path: Path) -> dict[str, str]:
    """Read (or create once) the development secrets file in the instance folder."""
    path = instance_path / "secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    missing = {k: make() for k, make in _GENERATED_SECRETS.items() if not stored.get(k)}
    if missing:
        stored.update(missing)
        instance_path.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return stored


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


class Config:
    """Every setting of the service, read from a mapping of environment variables."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        if environ is None:
            load_dotenv(PROJECT_ROOT / ".env")
            environ = os.environ
        # An empty variable means "not set", so `FOO=` in a .env file keeps the default.
        env = {k: v for k, v in environ.items() if v is not None and v.strip() != ""}
        self.APP_ENV = env.get("APP_ENV", "development").strip().lower()
        if self.APP_ENV not in {"development", "production", "testing"}:
            raise ConfigError(
                f"APP_ENV must be development, production or testing, got {self.APP_ENV!r}"
            )
        self.INSTANCE_PATH = str(Path(env.get("INSTANCE_PATH") or PROJECT_ROOT / "instance"))
        production = self.APP_ENV == "production"

        self._read_secrets(env, production)

        default_db = "sqlite:///" + str(Path(self.INSTANCE_PATH) / "gatehouse.db")
        raw_db = env.get("DATABASE_URL", "")
        if production and not raw_db:
            raise ConfigError("DATABASE_URL is not set (required when APP_ENV=production)")
        self.SQLALCHEMY_DATABASE_URI = normalize_database_url(raw_db or default_db)
        # No pre-ping: it costs a round trip per request. Connections are recycled instead,
        # and a dropped one answers 503 once while the pool replaces it.
        # hide_parameters: a logged database error never shows a bound value (a password
        # hash, an email, a token digest).
        self.SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {
            "pool_recycle": 1800,
            "hide_parameters": True,
        }

        self.REDIS_URL = env.get("REDIS_URL", "")
        self.CELERY_BROKER_URL = env.get("CELERY_BROKER_URL", "") or self.REDIS_URL
        self.CELERY_TASK_ALWAYS_EAGER = not self.CELERY_BROKER_URL
        self.CELERY_QUEUE = env.get("CELERY_QUEUE", "celery")
        # Prefix of every Redis key the service writes (rate limits, last-seen buffers),
        # so deployments or test runs can share one Redis.
        self.REDIS_KEY_PREFIX = env.get("REDIS_KEY_PREFIX", "gh")

        self.ISSUER = env.get("ISSUER", "http://127.0.0.1:5000")
        self.POSTMARK_SERVER_TOKEN = env.get("POSTMARK_SERVER_TOKEN", "")
        self.POSTMARK_API_URL = env.get("POSTMARK_API_URL", "https://api.postmarkapp.com")
        self.EMAIL_FROM = env.get("EMAIL_FROM", "")

        self.ACCESS_TOKEN_TTL = _int(env, "ACCESS_TOKEN_TTL", 15 * 60)
        self.REFRESH_TOKEN_TTL = _int(env, "REFRESH_TOKEN_TTL", 30 * 24 * 3600)
        self.CUSTOM_TOKEN_TTL = min(_int(env, "CUSTOM_TOKEN_TTL", 3600), 3600)
        self.REFRESH_REUSE_GRACE_SECONDS = _int(env, "REFRESH_REUSE_GRACE_SECONDS", 10)
        self.PASSWORD_RESET_TTL = min(_int(env, "PASSWORD_RESET_TTL", 3600), 3600)
        # A self-service password or email change needs a password entered this recently.
        self.REAUTH_MAX_AGE_SECONDS = _int(env, "REAUTH_MAX_AGE_SECONDS", 300)

        self.RATELIMIT_SIGNIN_PER_ACCOUNT = env.get("RATELIMIT_SIGNIN_PER_ACCOUNT", "10 per minute")
        self.RATELIMIT_SIGNIN_PER_IP = env.get("RATELIMIT_SIGNIN_PER_IP", "300 per minute")
        self.RATELIMIT_REFRESH_PER_IP = env.get("RATELIMIT_REFRESH_PER_IP", "300 per minute")
        self.RATELIMIT_RESET_PER_ADDRESS = env.get("RATELIMIT_RESET_PER_ADDRESS", "5 per hour")
        self.RATELIMIT_RESET_PER_IP = env.get("RATELIMIT_RESET_PER_IP", "60 per hour")
        self.RATELIMIT_ENABLED = _bool(env, "RATELIMIT_ENABLED", True)
        self.PROXY_FIX_X_FOR = _int(env, "PROXY_FIX_X_FOR", 0)

        self.MAIL_RETRY_BASE_SECONDS = _int(env, "MAIL_RETRY_BASE_SECONDS", 5)
        self.MAIL_MAX_ATTEMPTS = _int(env, "MAIL_MAX_ATTEMPTS", 8)
        self.MAIL_TIMEOUT_SECONDS = _int(env, "MAIL_TIMEOUT_SECONDS", 10)
        # Periodic jobs (beat) and their knobs.
        self.MAIL_REQUEUE_AFTER_SECONDS = _int(env, "MAIL_REQUEUE_AFTER_SECONDS", 300)
        self.MAIL_REQUEUE_INTERVAL_SECONDS = _int(env, "MAIL_REQUEUE_INTERVAL_SECONDS", 60)
        self.ACTIVITY_FLUSH_INTERVAL_SECONDS = _int(env, "ACTIVITY_FLUSH_INTERVAL_SECONDS", 60)
        self.CLEANUP_INTERVAL_SECONDS = _int(env, "CLEANUP_INTERVAL_SECONDS", 3600)
        self.CLEANUP_BATCH_SIZE = _int(env, "CLEANUP_BATCH_SIZE", 1000)
        self.DELIVERY_RETENTION_DAYS = _int(env, "DELIVERY_RETENTION_DAYS", 30)

        self.LOG_LEVEL = env.get("LOG_LEVEL", "INFO").upper()
        # Bodies over 1 MiB are refused with 413 before any view reads them.
        self.MAX_CONTENT_LENGTH = MIB
        self.SQLALCHEMY_TRACK_MODIFICATIONS = False

        # flask-smorest: the spec at /openapi.json, Swagger UI at /docs from package files.
        self.API_TITLE = "Gatehouse"
        self.API_VERSION = "1.0"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.OPENAPI_SWAGGER_UI_PATH = "docs"
        self.OPENAPI_SWAGGER_UI_URL = "/docs/static/"

    def _read_secrets(self, env: Mapping[str, str], production: bool) -> None:
        values = {name: env.get(name, "").strip() for name in _GENERATED_SECRETS}
        required = ("SECRET_KEY", "ENCRYPTION_KEYS")
        if production:
            for name in required:
                if not values[name]:
                    raise ConfigError(f"{name} is not set (required when APP_ENV=production)")
        elif not all(values[name] for name in _GENERATED_SECRETS):
            generated = _dev_secrets(Path(self.INSTANCE_PATH))
            values = {name: values[name] or generated[name] for name in _GENERATED_SECRETS}
        self.SECRET_KEY = values["SECRET_KEY"]
        self.ENCRYPTION_KEYS = [
            k.strip() for k in values["ENCRYPTION_KEYS"].split(",") if k.strip()
        ]
        self.ROOT_API_KEY = values["ROOT_API_KEY"]

    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    def as_dict(self) -> dict[str, Any]:
        """The uppercase settings, as Flask's config takes them."""
        return {k: v for k, v in vars(self).items() if k.isupper()}
