"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi db upgrade`. A bad setting or a
key ring that cannot open the data stops start-up with one line (app/startup.py); `flask
run` also says in one line when the database cannot be reached."""

from app.startup import checked_app, flask_run_is_serving

app = checked_app(serving=flask_run_is_serving())
