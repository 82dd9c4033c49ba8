"""Celery entry point: `celery -A worker worker` and `celery -A worker beat`."""

from app.core.logs import format_celery_logs
from app.periodic import configure_beat
from app.startup import checked_app

flask_app = checked_app()
format_celery_logs(flask_app.config["LOG_FORMAT"])
celery = flask_app.extensions["celery"]
app = celery
configure_beat(celery, flask_app)
