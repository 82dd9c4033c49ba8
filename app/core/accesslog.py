"""gunicorn's logger with credentials redacted (gunicorn.conf.py `logger_class`): its
access log, in text (`--access-logfile`) and JSON (`LOG_FORMAT=json`), records the
request line with its query string, the Referer and any header a format names; its error
log may quote a request line. Both go through app.core.redact first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from app.core.redact import REDACTED, REDACTING_FILTER, redact_text

# Atoms that are credentials whole: `%({authorization}i)s`, `%({cookie}i)s`,
# `%({set-cookie}o)s`, `%({http_authorization}e)s`, …
_SECRET_ATOMS = ("authorization", "cookie", "apikey", "api-key", "api_key")


def _redact_atom(name: str, value: Any) -> Any:
    if not isinstance(value, str) or value in ("", "-"):
        return value
    if name.startswith("{") and any(part in name for part in _SECRET_ATOMS):
        return REDACTED
    return redact_text(value)


class RedactingLogger(Logger):
    """gunicorn's Logger whose access-log atoms and error-log lines are redacted."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.addFilter(REDACTING_FILTER)

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta
    ) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {name: _redact_atom(name, value) for name, value in atoms.items()}
