"""Configuration read from the environment (and a `.env` file), with typed defaults.

Every setting is parsed here, so a bad value stops start-up with one line naming the
variable (ConfigError) instead of failing on first use. In development missing secrets
are generated once into `instance/secrets.json`; in production (`APP_ENV=production`) a
missing one stops start-up too.
"""

from __future__ import annotations

import base64
import difflib
import importlib.util
import ipaddress
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import load_dotenv
from limits import parse as parse_rate_limit
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

PROJECT_ROOT = Path(__file__).resolve().parent
MIB = 1024 * 1024
# The default sending lease is the send timeout plus this (config: MAIL_SENDING_LEASE_SECONDS).
MAIL_LEASE_MARGIN_SECONDS = 5
MIN_SECRET_KEY_BYTES = 32


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


# Databases the migrations and queries are written for, with the drivers that can load.
_DATABASE_DRIVERS = {"postgresql": ("psycopg", "psycopg2"), "sqlite": ("pysqlite",)}


def check_database_url(url: str) -> str:
    """`url` (normalized) when it names PostgreSQL or SQLite with an installed driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError("DATABASE_URL is not a database URL") from exc
    shown = parsed.render_as_string(hide_password=True)
    # The backend is checked before the driver: asking for the driver loads the dialect,
    # and a misspelt scheme (`postgressql://`) then failed with a 50-line traceback.
    backend = parsed.get_backend_name()
    if backend not in _DATABASE_DRIVERS:
        close = difflib.get_close_matches(backend, ["postgresql", "postgres", "sqlite"], n=1)
        hint = f" (did you mean {close[0]}://?)" if close else ""
        raise ConfigError(f"DATABASE_URL must be a PostgreSQL or SQLite URL, got {shown}{hint}")
    try:
        driver = parsed.get_driver_name()
    except NoSuchModuleError as exc:
        raise ConfigError(f"DATABASE_URL names a driver that is not supported: {shown}") from exc
    if driver not in _DATABASE_DRIVERS[backend]:
        raise ConfigError(f"DATABASE_URL names the driver {driver!r}, which is not supported")
    module = {"pysqlite": "sqlite3"}.get(driver, driver)
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"DATABASE_URL needs the {module} package, which is not installed")
    return url


def resolve_sqlite_path(url: str, instance_path: str) -> str:
    """A SQLite URL with a relative path made absolute under the instance folder.

    Flask-SQLAlchemy already opens a relative path there, while anything else that reads the
    URL (the instance-file set-up, a worker started elsewhere) took it relative to the
    working directory: `sqlite:///relative.db` made two files and then "no such table".
    Resolved once here, every process and command uses the same file."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return url
    if database.startswith("file:") or Path(database).is_absolute():
        return url
    absolute = str(Path(instance_path).resolve() / database)
    return parsed.set(database=absolute).render_as_string(hide_password=False)


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> str:
    """`url` when it has one of `schemes` and a host (a socket path for unix URLs)."""
    parts = urlsplit(url)
    where = parts.path if parts.scheme == "unix" else parts.hostname
    if parts.scheme.lower() not in schemes or not where:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{name} must be a URL starting with {allowed}, got {_hide(url)!r}")
    return url


def _hide(url: str) -> str:
    """A URL with its password, if any, replaced (config values may hold credentials)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
    return url


def _check_broker_url(url: str) -> str:
    from kombu.transport import TRANSPORT_ALIASES, resolve_transport

    scheme = url.partition("://")[0].split("+", 1)[0].lower()
    if scheme not in TRANSPORT_ALIASES:
        raise ConfigError(f"CELERY_BROKER_URL names no Celery broker transport: {_hide(url)!r}")
    try:
        resolve_transport(scheme)
    except Exception as exc:  # the transport's own library is missing or broken
        raise ConfigError(
            f"CELERY_BROKER_URL needs the {scheme} transport, which cannot be loaded"
        ) from exc
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


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    value = raw.strip().lower()
    if value not in _TRUE | _FALSE:
        raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off), got {raw!r}")
    return value in _TRUE


def _seconds_list(env: Mapping[str, str], name: str, default: str) -> list[int]:
    raw = env.get(name) or default
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated seconds, got {raw!r}") from exc
    if not values or any(value < 0 for value in values):
        raise ConfigError(f"{name} must be comma-separated seconds (0 or more), got {raw!r}")
    return values


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, default)
    try:
        parse_rate_limit(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{name} must be a rate limit like '10 per minute' or '5/hour', got {raw!r}"
        ) from exc
    return raw


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, default).strip()
    folded = value.lower() if name != "LOG_LEVEL" else value.upper()
    if folded not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return folded


def _dev_issuer(env: Mapping[str, str]) -> str:
    """Where `flask run` serves (FLASK_RUN_HOST / FLASK_RUN_PORT, as `make run` sets them),
    so tokens and discovery name the address clients really use."""
    host = env.get("FLASK_RUN_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"  # listening everywhere; the loopback address is one that works
    port = _int(env, "FLASK_RUN_PORT", 5000, minimum=1)
    return f"http://{host}:{port}"


def _secure_enough(issuer: str) -> bool:
    """Whether an issuer URL is https, or http on a loopback host (nothing leaves it)."""
    parts = urlsplit(issuer)
    if parts.scheme.lower() == "https":
        return True
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_encryption_keys(keys: list[str]) -> None:
    """Each key must be 32 bytes of urlsafe base64; the message never shows a key."""
    if not keys:
        raise ConfigError("ENCRYPTION_KEYS is empty")
    for position, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(
                f"ENCRYPTION_KEYS key {position} of {len(keys)} is not valid: each key must be "
                "32 bytes, urlsafe-base64 encoded"
            )


class Config:
    """Every setting of the service, read from a mapping of environment variables."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        if environ is None:
            load_dotenv(PROJECT_ROOT / ".env")
            environ = os.environ
        # An empty variable means "not set", so `FOO=` in a .env file keeps the default.
        env = {k: v for k, v in environ.items() if v is not None and v.strip() != ""}
        self.APP_ENV = _choice(
            env, "APP_ENV", "development", ("development", "production", "testing")
        )
        self.INSTANCE_PATH = str(Path(env.get("INSTANCE_PATH") or PROJECT_ROOT / "instance"))
        production = self.APP_ENV == "production"

        self._read_secrets(env, production)

        default_db = "sqlite:///" + str(Path(self.INSTANCE_PATH) / "gatehouse.db")
        raw_db = env.get("DATABASE_URL", "")
        if production and not raw_db:
            raise ConfigError("DATABASE_URL is not set (required when APP_ENV=production)")
        self.SQLALCHEMY_DATABASE_URI = resolve_sqlite_path(
            check_database_url(normalize_database_url(raw_db or default_db)), self.INSTANCE_PATH
        )
        # No pre-ping: it costs a round trip per request. Connections are recycled instead,
        # and one the server closed is replaced at checkout (app.core.db).
        # hide_parameters: a logged database error never shows a bound value (a password
        # hash, an email, a token digest).
        self.SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {
            "pool_recycle": 1800,
            "hide_parameters": True,
        }
        # A database that accepts connections but never answers must not hold a request:
        # connecting and waiting for a pooled connection give up after this; the answer
        # is 503.
        self.DATABASE_TIMEOUT_SECONDS = _int(env, "DATABASE_TIMEOUT_SECONDS", 5)
        if self.SQLALCHEMY_DATABASE_URI.startswith("postgresql"):
            self.SQLALCHEMY_ENGINE_OPTIONS.update(
                pool_timeout=self.DATABASE_TIMEOUT_SECONDS,
                connect_args={"connect_timeout": max(2, self.DATABASE_TIMEOUT_SECONDS)},
            )
        if not self.SQLALCHEMY_DATABASE_URI.startswith("sqlite"):
            # Per process: at least gunicorn's threads per worker (gunicorn.conf.py), so
            # busy threads never open and close overflow connections request by request.
            self.SQLALCHEMY_ENGINE_OPTIONS["pool_size"] = _int(env, "DATABASE_POOL_SIZE", 10)
            self.SQLALCHEMY_ENGINE_OPTIONS["max_overflow"] = _int(env, "DATABASE_MAX_OVERFLOW", 10)

        # argon2id hashes one process runs at once: gunicorn.conf.py runs a worker per core
        # and sets it to the cores each worker has (at least 1).
        self.PASSWORD_HASH_CONCURRENCY = _int(env, "PASSWORD_HASH_CONCURRENCY", 1)

        self.REDIS_URL = env.get("REDIS_URL", "")
        if self.REDIS_URL:
            _check_url("REDIS_URL", self.REDIS_URL, ("redis", "rediss", "unix"))
        self.CELERY_BROKER_URL = env.get("CELERY_BROKER_URL", "") or self.REDIS_URL
        if self.CELERY_BROKER_URL:
            _check_broker_url(self.CELERY_BROKER_URL)
        self.CELERY_TASK_ALWAYS_EAGER = not self.CELERY_BROKER_URL
        self.CELERY_QUEUE = env.get("CELERY_QUEUE", "celery")
        # Prefix of every Redis key the service writes (rate limits, last-seen buffers),
        # so deployments or test runs can share one Redis.
        self.REDIS_KEY_PREFIX = env.get("REDIS_KEY_PREFIX", "gh")

        # Development follows the address `flask run` serves; production names it (or keeps
        # the documented default).
        default_issuer = "http://127.0.0.1:5000" if production else _dev_issuer(env)
        self.ISSUER = _check_url("ISSUER", env.get("ISSUER", default_issuer), ("http", "https"))
        # Plain http is for loopback and development: browsers drop Secure cookies over
        # it, and anything on the way reads the sign-in. Production says so on purpose.
        self.ALLOW_INSECURE_ISSUER = _bool(env, "ALLOW_INSECURE_ISSUER", False)
        if production and not self.ALLOW_INSECURE_ISSUER and not _secure_enough(self.ISSUER):
            raise ConfigError(
                f"ISSUER {self.ISSUER} is plain http on a non-loopback host: serve it over "
                "https (or set ALLOW_INSECURE_ISSUER=true if that is intended)"
            )
        self.POSTMARK_SERVER_TOKEN = env.get("POSTMARK_SERVER_TOKEN", "")
        self.POSTMARK_API_URL = _check_url(
            "POSTMARK_API_URL",
            env.get("POSTMARK_API_URL", "https://api.postmarkapp.com"),
            ("http", "https"),
        )
        self.EMAIL_FROM = env.get("EMAIL_FROM", "")

        self.ACCESS_TOKEN_TTL = _int(env, "ACCESS_TOKEN_TTL", 15 * 60, minimum=1)
        self.REFRESH_TOKEN_TTL = _int(env, "REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=1)
        self.CUSTOM_TOKEN_TTL = min(_int(env, "CUSTOM_TOKEN_TTL", 3600, minimum=1), 3600)
        self.REFRESH_REUSE_GRACE_SECONDS = _int(env, "REFRESH_REUSE_GRACE_SECONDS", 10)
        self.PASSWORD_RESET_TTL = min(_int(env, "PASSWORD_RESET_TTL", 3600, minimum=1), 3600)
        # A self-service password or email change needs a password entered this recently.
        self.REAUTH_MAX_AGE_SECONDS = _int(env, "REAUTH_MAX_AGE_SECONDS", 300)
        # Hosted sign-in (issue 19): authorization codes live at most 60 s (RFC 6749 §4.1.2
        # recommends 10 min at most; one minute is plenty for a redirect), the browser's
        # sign-in session lets other apps skip the form for LOGIN_SESSION_TTL.
        self.AUTHORIZATION_CODE_TTL = min(_int(env, "AUTHORIZATION_CODE_TTL", 60, minimum=1), 60)
        # 0 turns single sign-on off: every authorization request shows the form.
        self.LOGIN_SESSION_TTL = _int(env, "LOGIN_SESSION_TTL", 24 * 3600)
        # The sign-in cookies are Secure when the issuer is https: a browser drops Secure
        # cookies sent over plain http, and every sign-in through the page would fail.
        self.LOGIN_COOKIE_SECURE = _bool(
            env, "LOGIN_COOKIE_SECURE", urlsplit(self.ISSUER).scheme.lower() == "https"
        )
        self.EMAIL_VERIFICATION_TTL = _int(env, "EMAIL_VERIFICATION_TTL", 24 * 3600, minimum=1)
        # Exports (issue 24): a job's download link lives EXPORT_URL_TTL; the job and its
        # file are deleted by the periodic clean-up EXPORT_RETENTION_SECONDS after it began.
        self.EXPORT_URL_TTL = _int(env, "EXPORT_URL_TTL", 3600, minimum=1)
        self.EXPORT_RETENTION_SECONDS = _int(env, "EXPORT_RETENTION_SECONDS", 24 * 3600)
        # Passkeys (issue 25): the WebAuthn relying party is the issuer's host and its
        # origin unless told otherwise (WebAuthn refuses an IP-literal host: a deployment
        # served at an IP address names a host here).
        # An issuer at a loopback address (make run's http://127.0.0.1:5000) defaults to the
        # same server under the name localhost, which WebAuthn accepts.
        issuer_parts = urlsplit(self.ISSUER)
        rp_host = issuer_parts.hostname or "localhost"
        rp_netloc = issuer_parts.netloc
        if rp_host in ("127.0.0.1", "::1"):
            rp_host = "localhost"
            rp_netloc = f"localhost:{issuer_parts.port}" if issuer_parts.port else "localhost"
        self.WEBAUTHN_RP_ID = env.get("WEBAUTHN_RP_ID") or rp_host
        self.WEBAUTHN_ORIGINS = [
            origin.strip().rstrip("/")
            for origin in env.get("WEBAUTHN_ORIGINS", f"{issuer_parts.scheme}://{rp_netloc}").split(
                ","
            )
            if origin.strip()
        ]

        for name, default in (
            ("RATELIMIT_SIGNIN_PER_ACCOUNT", "10 per minute"),
            ("RATELIMIT_SIGNIN_PER_IP", "300 per minute"),
            ("RATELIMIT_REFRESH_PER_IP", "300 per minute"),
            ("RATELIMIT_RESET_PER_ADDRESS", "5 per hour"),
            ("RATELIMIT_RESET_PER_IP", "60 per hour"),
            ("RATELIMIT_VERIFY_PER_USER", "5 per hour"),
            ("RATELIMIT_SIGNUP_PER_IP", "20 per hour"),
            ("RATELIMIT_SIGNUP_PER_ADDRESS", "5 per hour"),
        ):
            setattr(self, name, _rate_limit(env, name, default))
        self.RATELIMIT_ENABLED = _bool(env, "RATELIMIT_ENABLED", True)
        self.PROXY_FIX_X_FOR = _int(env, "PROXY_FIX_X_FOR", 0)

        self.MAIL_RETRY_BASE_SECONDS = _int(env, "MAIL_RETRY_BASE_SECONDS", 5)
        self.MAIL_MAX_ATTEMPTS = _int(env, "MAIL_MAX_ATTEMPTS", 8, minimum=1)
        self.MAIL_TIMEOUT_SECONDS = _int(env, "MAIL_TIMEOUT_SECONDS", 10, minimum=1)
        # Periodic jobs (beat) and their knobs.
        self.MAIL_REQUEUE_AFTER_SECONDS = _int(env, "MAIL_REQUEUE_AFTER_SECONDS", 300)
        self.MAIL_REQUEUE_INTERVAL_SECONDS = _int(
            env, "MAIL_REQUEUE_INTERVAL_SECONDS", 60, minimum=1
        )
        # A row claimed by a worker that died mid-send may be claimed again after this; it
        # must outlast one Postmark call, or a slow but live send could be repeated. By
        # default it follows the send timeout, a few seconds over it: a fixed 300 s kept a
        # killed worker's mail waiting 5 minutes whatever the timeout.
        self.MAIL_SENDING_LEASE_SECONDS = max(
            _int(
                env,
                "MAIL_SENDING_LEASE_SECONDS",
                self.MAIL_TIMEOUT_SECONDS + MAIL_LEASE_MARGIN_SECONDS,
                minimum=1,
            ),
            self.MAIL_TIMEOUT_SECONDS + 1,
        )
        self.ACTIVITY_FLUSH_INTERVAL_SECONDS = _int(
            env, "ACTIVITY_FLUSH_INTERVAL_SECONDS", 60, minimum=1
        )
        self.CLEANUP_INTERVAL_SECONDS = _int(env, "CLEANUP_INTERVAL_SECONDS", 3600, minimum=1)
        self.CLEANUP_BATCH_SIZE = _int(env, "CLEANUP_BATCH_SIZE", 1000, minimum=1)
        self.DELIVERY_RETENTION_DAYS = _int(env, "DELIVERY_RETENTION_DAYS", 30, minimum=1)

        # Webhooks (issue 26): the delays between attempts (seconds; one attempt more than
        # delays), how long one attempt may take, and which targets are allowed.
        # Production refuses plain http and targets that resolve to private addresses.
        self.WEBHOOK_RETRY_SCHEDULE = _seconds_list(
            env, "WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000"
        )
        self.WEBHOOK_TIMEOUT_SECONDS = _int(env, "WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
        self.WEBHOOK_ALLOW_PRIVATE_TARGETS = _bool(
            env, "WEBHOOK_ALLOW_PRIVATE_TARGETS", not production
        )
        self.WEBHOOK_ALLOW_HTTP = _bool(env, "WEBHOOK_ALLOW_HTTP", not production)
        # Plain-http endpoints for a connection's upstream provider (a local provider in
        # development and tests); production talks to identity providers over https only.
        self.FEDERATION_ALLOW_HTTP = _bool(env, "FEDERATION_ALLOW_HTTP", not production)
        # A connection's provider URLs may resolve to loopback/private addresses (an
        # on-premise IdP, a local one in development and tests); production refuses them.
        self.FEDERATION_ALLOW_PRIVATE_TARGETS = _bool(
            env, "FEDERATION_ALLOW_PRIVATE_TARGETS", not production
        )
        # After a rotation the previous secret signs too, for this long.
        self.WEBHOOK_SECRET_GRACE_SECONDS = _int(env, "WEBHOOK_SECRET_GRACE_SECONDS", 86400)
        # An endpoint whose every delivery failed for this long is disabled (5 days).
        self.WEBHOOK_DISABLE_AFTER_SECONDS = _int(
            env, "WEBHOOK_DISABLE_AFTER_SECONDS", 5 * 86400, minimum=1
        )
        # Attempts one endpoint may have running at once: a slow endpoint holds at most
        # this many worker slots, whatever its backlog.
        self.WEBHOOK_MAX_IN_FLIGHT = _int(env, "WEBHOOK_MAX_IN_FLIGHT", 2, minimum=1)
        # Beat sends messages that came due (a retry, or one whose queueing failed).
        self.WEBHOOK_DISPATCH_INTERVAL_SECONDS = _int(
            env, "WEBHOOK_DISPATCH_INTERVAL_SECONDS", 10, minimum=1
        )
        self.WEBHOOK_RETENTION_DAYS = _int(env, "WEBHOOK_RETENTION_DAYS", 30, minimum=1)
        # The queue of delivery tasks; a worker without -Q consumes it with the default one.
        self.WEBHOOK_QUEUE = env.get("WEBHOOK_QUEUE", f"{self.CELERY_QUEUE}.webhooks")

        self.LOG_LEVEL = _choice(
            env, "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        )
        # `json`: one JSON object per log line (API, worker and beat).
        self.LOG_FORMAT = _choice(env, "LOG_FORMAT", "text", ("text", "json"))
        # Bodies over 1 MiB are refused with 413 before any view reads them.
        self.MAX_CONTENT_LENGTH = MIB
        # The one exception: the file of an import job (`POST /api/v2/jobs/users-imports`).
        self.IMPORT_MAX_BYTES = _int(env, "IMPORT_MAX_BYTES", 100 * MIB, minimum=1)
        # An import job whose worker has not committed a batch (its heartbeat) for this long
        # is taken to be dead and queued again by `requeue-stuck`; a live worker commits a
        # batch about every quarter second, and a second worker on the same job stops at
        # its first batch, so a short value costs no duplicate, only wasted work.
        self.IMPORT_STALE_SECONDS = _int(env, "IMPORT_STALE_SECONDS", 300, minimum=1)
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
        # Where the ring came from, for `flask keys rotate-encryption --check`: a shell
        # without the variable reads another ring (instance/secrets.json) in development.
        self.ENCRYPTION_KEYS_SOURCE = (
            "the environment (ENCRYPTION_KEYS, or .env)"
            if values["ENCRYPTION_KEYS"]
            else str(Path(self.INSTANCE_PATH) / "secrets.json")
        )
        required = ("SECRET_KEY", "ENCRYPTION_KEYS")
        if production:
            for name in required:
                if not values[name]:
                    raise ConfigError(f"{name} is not set (required when APP_ENV=production)")
        elif not all(values[name] for name in _GENERATED_SECRETS):
            generated = _dev_secrets(Path(self.INSTANCE_PATH))
            values = {name: values[name] or generated[name] for name in _GENERATED_SECRETS}
        self.SECRET_KEY = values["SECRET_KEY"]
        # It signs reset links, custom tokens and sessions: a short one can be guessed.
        size = len(self.SECRET_KEY.encode())
        if production and size < MIN_SECRET_KEY_BYTES:
            raise ConfigError(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes when "
                f"APP_ENV=production, got {size}; make one with: "
                'python3 -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        self.ENCRYPTION_KEYS = [
            k.strip() for k in values["ENCRYPTION_KEYS"].split(",") if k.strip()
        ]
        _check_encryption_keys(self.ENCRYPTION_KEYS)
        self.ROOT_API_KEY = values["ROOT_API_KEY"]

    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    def as_dict(self) -> dict[str, Any]:
        """The uppercase settings, as Flask's config takes them."""
        return {k: v for k, v in vars(self).items() if k.isupper()}
