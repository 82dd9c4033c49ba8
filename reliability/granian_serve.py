"""Granian in gunicorn's place, for `RELIABILITY_SERVER=granian` (issue 29): what
gunicorn.conf.py does in gunicorn's master is done here, then Granian's own command line
(`python -m granian`) runs in this same process with the arguments given.

`python -m reliability.granian_serve --host H --port P wsgi:app` serves with the shape
`make bench` measured (bench/run.py `_granian()`): WSGI over HTTP/1, one worker per core
(at most 4), 8 blocking threads each (the threads that run the app, as gthread's), a
killed worker started again, and at most as many argon2id hashes at once per worker as
the worker has cores. Each is a default in Granian's own GRANIAN_* variables, so a flag
or the variable overrides it; give the worker count as GRANIAN_WORKERS (or
WEB_CONCURRENCY), not `--workers`, so that PASSWORD_HASH_CONCURRENCY follows it.

Before Granian binds, the settings are checked once (`checked_app(serving=True)`: exit 4
with `ConfigError: <one line>`), and the Prometheus multi-process folder is made (or
emptied of an earlier run's counters); a folder made here is removed when Granian stops.
Granian forks its workers from this process, so they inherit the variable, as gunicorn's
workers inherit it from the master.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent.parent


def shape_defaults(environ: dict[str, str] | os._Environ[str], cores: int) -> dict[str, str]:
    """The variables set unless the operator set them: Granian's own, and the hashing
    concurrency the app reads."""
    workers = int(environ.get("GRANIAN_WORKERS") or environ.get("WEB_CONCURRENCY") or min(cores, 4))
    return {
        "GRANIAN_INTERFACE": "wsgi",
        "GRANIAN_HTTP": "1",
        "GRANIAN_WEBSOCKETS": "false",
        "GRANIAN_WORKERS": str(workers),
        "GRANIAN_BLOCKING_THREADS": environ.get("GUNICORN_THREADS") or "8",
        "GRANIAN_RESPAWN_FAILED_WORKERS": "true",
        "PASSWORD_HASH_CONCURRENCY": str(max(1, cores // workers)),
    }


def main() -> None:
    load_dotenv(ROOT / ".env")  # as config.py and gunicorn.conf.py read it: env wins
    for name, value in shape_defaults(os.environ, os.cpu_count() or 2).items():
        os.environ.setdefault(name, value)
    made_here = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if made_here:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gatehouse-metrics-")
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:  # a refused start-up removes the folder too
        from app.startup import checked_app  # after the variable: prometheus_client reads it

        checked_app(serving=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in metrics_dir.glob("*.db"):
            stale.unlink()

        from granian.cli import entrypoint

        entrypoint()  # reads sys.argv and the GRANIAN_* variables; returns when stopped
    finally:
        if made_here:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
