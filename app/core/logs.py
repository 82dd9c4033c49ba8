"""Log lines of every process (API, worker, beat): plain text or one JSON object per line
(`LOG_FORMAT=json`), each carrying the request id — the HTTP request's, or in the worker
the id of the request that queued the task (the task id when none did) — and none holding
a credential taken from a URL (app.core.redact)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from flask import Flask, g, has_request_context
from pythonjsonlogger.json import JsonFormatter

from app.core.redact import REDACTING_FILTER

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
_task_request_id: ContextVar[str | None] = ContextVar("gatehouse_task_request_id", default=None)


def current_request_id() -> str | None:
    """The request id of the work in hand: a running task's, else the request's, else
    None. (A task run in-process pushes an app context of its own, which hides `g`.)"""
    bound = _task_request_id.get()
    if bound is not None:
        return bound
    if has_request_context():
        return getattr(g, "request_id", None)
    return None


@contextmanager
def bound_request_id(request_id: str | None) -> Iterator[None]:
    """Log lines inside the block carry `request_id` (a task runs outside any request)."""
    token = _task_request_id.set(request_id)
    try:
        yield
    finally:
        _task_request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record (`-` outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


class _JsonLines(JsonFormatter):
    """One JSON object per record; no request id is `null` (text lines show `-`)."""

    def process_log_record(self, log_data: dict[str, object]) -> dict[str, object]:
        if log_data.get("request_id") == "-":
            log_data["request_id"] = None
        return log_data


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for `LOG_FORMAT` (`text` or `json`)."""
    if log_format == "json":
        return _JsonLines(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(TEXT_FORMAT)


def _our_handler(logger: logging.Logger) -> logging.Handler | None:
    for handler in logger.handlers:
        if any(isinstance(f, RequestIdFilter) for f in handler.filters):
            return handler
    return None


def configure_logging(app: Flask) -> None:
    """One handler on the `app` logger, in the app's format and level (idempotent: the
    latest app built in a process decides, as tests build many). The development server's
    request log (`werkzeug`, `make run`) prints each URL: its query values are redacted."""
    logger = logging.getLogger("app")
    handler = _our_handler(logger)
    if handler is None:
        handler = logging.StreamHandler()
        handler.addFilter(RequestIdFilter())
        handler.addFilter(REDACTING_FILTER)
        logger.addHandler(handler)
    handler.setFormatter(make_formatter(app.config["LOG_FORMAT"]))
    logger.setLevel(app.config["LOG_LEVEL"])
    logging.getLogger("werkzeug").addFilter(REDACTING_FILTER)


def format_celery_logs(log_format: str) -> None:
    """Give the worker's and beat's own log handlers (set up by Celery) our format, request
    ids and redaction, so every line of those processes looks like the API's.

    Celery puts its handler on the root logger, where the `app` logger's records arrive
    too: the `app` logger's own handler is removed there, or each of its lines would be
    printed twice."""
    from celery.signals import after_setup_logger, after_setup_task_logger

    def reformat(logger: logging.Logger, **_: object) -> None:
        for handler in logger.handlers:
            handler.setFormatter(make_formatter(log_format))
            if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                handler.addFilter(RequestIdFilter())
            handler.addFilter(REDACTING_FILTER)
        if logger is logging.getLogger() and logger.handlers:
            app_logger = logging.getLogger("app")
            ours = _our_handler(app_logger)
            if ours is not None and app_logger.propagate:
                app_logger.removeHandler(ours)

    after_setup_logger.connect(reformat, weak=False)
    after_setup_task_logger.connect(reformat, weak=False)
    if log_format == "json":
        logging.captureWarnings(True)  # warnings become log lines too, not raw text
