"""Celery entry point: `celery -A worker worker` and `celery -A worker beat`."""

from app import create_app
from app.periodic import beat_schedule

flask_app = create_app()
celery = flask_app.extensions["celery"]
app = celery
celery.conf.beat_schedule = beat_schedule(flask_app)
