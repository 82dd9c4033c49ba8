"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi db upgrade`. A bad setting or a
key ring that cannot open the data stops start-up with one line (app/startup.py)."""

from app.startup import checked_app

app = checked_app()
