"""Gunicorn settings, read from ./gunicorn.conf.py by `gunicorn wsgi:app`: the workers
(measured by `make bench`, see bench/README.md), Prometheus metrics across workers,
gunicorn's own log lines in LOG_FORMAT with credentials redacted, and the request-line
limit. GUNICORN_CMD_ARGS or flags override any of them.

Workers: threaded (gthread) workers keep connections alive and let a worker serve another
request while one waits on PostgreSQL, which on a 2-core machine gave the hot read about
1.4x the requests per second of 4 sync workers at lower CPU per request. One worker per
core (the GIL makes a process use one core at a time), 8 threads each; the database pool
(DATABASE_POOL_SIZE, default 10) must stay at least the thread count; password hashing
runs at most as many at once per worker as the worker has cores.

Each worker is a process with its own counters; prometheus-client's multi-process mode
adds them up at scrape time from files in PROMETHEUS_MULTIPROC_DIR. When the operator
names no folder, a fresh one is made for this server. The variable must be set before
any worker imports prometheus_client, which is why it is set here, in the master.
"""

import os
import shutil
import tempfile
from pathlib import Path

from dotenv import load_dotenv

load_dotenv(Path(__file__).resolve().parent / ".env")  # as config.py reads it: env wins
_made_here = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _made_here:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gatehouse-metrics-")
_metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server):
    """The settings are checked once, here in the master, before any worker starts: with
    several workers each would print the same refusal, racing the master's shutdown.
    Counters of an earlier run must not be added to this one's."""
    from app.startup import checked_app

    # Exits with `ConfigError: <one line>`; logs one line when the database cannot be
    # reached (the server still starts); leaves no connection behind. on_exit does not run
    # after a refusal here, so the folder made for this run goes now.
    try:
        checked_app(serving=True)
    except BaseException:
        on_exit(server)
        raise

    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in _metrics_dir.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _made_here:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json"},
        },
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }


# At most 4 workers by default: each holds up to DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW
# PostgreSQL connections, and a big host must not exhaust the server's max_connections.
workers = int(os.environ.get("WEB_CONCURRENCY") or min(os.cpu_count() or 2, 4))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 8)
keepalive = 5  # seconds an idle client connection is kept (clients and proxies reuse it)
# argon2id hashes at once per worker: the cores each worker has. More only thrash the
# caches (8 threads hashing on 2 cores signed in ~20-35 % fewer users per second).
os.environ.setdefault("PASSWORD_HASH_CONCURRENCY", str(max(1, (os.cpu_count() or 2) // workers)))
# Its access log (on with LOG_FORMAT=json, or --access-logfile) records each request line
# with its query string and the Referer: credentials, codes, hints and addresses in them
# are redacted (app/core/redact.py), and so are its error log's lines.
logger_class = "app.core.accesslog.RedactingLogger"
# gunicorn's own 414 is an HTML page: at its largest request line (8190 bytes) the app sees
# every URL up to that and answers an over-long one itself, in the surface's JSON
# (app/core/inputs.py MAX_URL_BYTES).
limit_request_line = 8190
# gunicorn's control socket defaults to one path per host user (~/.gunicorn/gunicorn.ctl):
# a second server on the host (a replica, a blue-green switch) would take it over. Nothing
# here uses it.
control_socket_disable = True
