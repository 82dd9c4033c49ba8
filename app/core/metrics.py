"""Prometheus metrics (prometheus-client), served at `/metrics`.

Per request: one counter and one histogram update, through label children cached per
(method, route, status), so the hot path pays a dict look-up and two increments.
Under gunicorn with several workers, PROMETHEUS_MULTIPROC_DIR (set by gunicorn.conf.py)
makes every worker write its values there and a scrape adds them up. Counts that other
processes make (Celery task outcomes in the worker) live in Redis, and counts of rows
(mail deliveries by state) are read from the database when scraped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.core import redis_client

log = logging.getLogger(__name__)

# What generate_latest writes, as prometheus-client names it: /metrics is documented and
# served with this one value.
CONTENT_TYPE = CONTENT_TYPE_LATEST

HTTP_REQUESTS = Counter(
    "gatehouse_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ("method", "route", "status"),
)
HTTP_LATENCY = Histogram(
    "gatehouse_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ("method", "route"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SIGNINS = Counter("gatehouse_signins", "Sign-ins by outcome (success, failure).", ("outcome",))
UNMATCHED = "<unmatched>"  # 404s: no route, and no unbounded label values from paths
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_children_lock = threading.Lock()


def _observe(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    pair = _children.get(key)
    if pair is None:
        with _children_lock:
            pair = _children.setdefault(
                key,
                (
                    HTTP_REQUESTS.labels(method, route, str(status)),
                    HTTP_LATENCY.labels(method, route),
                ),
            )
    pair[0].inc()
    pair[1].observe(seconds)


def install_request_metrics(app: Flask) -> None:
    """Count and time every request (registered first, so the clock starts first)."""

    @app.before_request
    def start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def record(response: Any) -> Any:
        started = g.get("metrics_started")
        if started is not None:
            rule = request.url_rule
            route = rule.rule if rule is not None else UNMATCHED
            _observe(request.method, route, response.status_code, time.perf_counter() - started)
        return response


def count_signin(success: bool) -> None:
    SIGNINS.labels("success" if success else "failure").inc()


# --- counts shared between processes ---------------------------------------------------

_TASK_FIELD_SEPARATOR = "|"
_memory_tasks: dict[str, int] = {}
_memory_lock = threading.Lock()


def _tasks_key() -> str:
    return f"{current_app.config['REDIS_KEY_PREFIX']}:metrics:celery_tasks"


def count_task(task: str, outcome: str) -> None:
    """Count a Celery task outcome (succeeded, failed, retried) where every process's
    /metrics sees it: Redis, or this process's memory when tasks run in-process."""
    field = f"{task}{_TASK_FIELD_SEPARATOR}{outcome}"
    client = redis_client.client()
    if client is None:
        with _memory_lock:
            _memory_tasks[field] = _memory_tasks.get(field, 0) + 1
        return
    try:
        client.hincrby(_tasks_key(), field, 1)
    except Exception as exc:  # a metric must never fail the task
        log.warning("task outcome not counted: %s", type(exc).__name__)


def _task_counts() -> dict[str, int]:
    client = redis_client.client()
    if client is None:
        with _memory_lock:
            return dict(_memory_tasks)
    raw = client.hgetall(_tasks_key())
    return {field.decode(): int(count) for field, count in raw.items()}


class _ScrapeCollector(Collector):
    """Counts read at scrape time: Celery task outcomes and the app's gauges."""

    def __init__(self, gauges: list[tuple[str, str, str, Callable[[], dict[str, int]]]]):
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        tasks = CounterMetricFamily(
            "gatehouse_celery_tasks",
            "Celery task outcomes (succeeded, failed, retried), by task.",
            labels=("task", "outcome"),
        )
        try:
            for field, count in sorted(_task_counts().items()):
                tasks.add_metric(field.split(_TASK_FIELD_SEPARATOR, 1), count)
        except Exception as exc:  # Redis down: the rest of the scrape still answers
            log.warning("task outcomes not read: %s", type(exc).__name__)
        yield tasks
        for name, documentation, label, read in self.gauges:
            gauge = GaugeMetricFamily(name, documentation, labels=(label,))
            for value, count in sorted(read().items()):
                gauge.add_metric((value,), count)
            yield gauge


def add_gauge(
    app: Flask, name: str, documentation: str, label: str, read: Callable[[], dict[str, int]]
) -> None:
    """A gauge computed at scrape time by `read()` ({label value: count})."""
    app.extensions.setdefault("gatehouse.gauges", []).append((name, documentation, label, read))


def exposition() -> bytes:
    """The metrics page, in the text format of `CONTENT_TYPE`."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY  # this process's own, with process and GC metrics
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(_ScrapeCollector(current_app.extensions.get("gatehouse.gauges", [])))
    return generate_latest(registry) + generate_latest(scraped)
