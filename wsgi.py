"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi db upgrade`. A bad setting or a
key ring that cannot open the data stops start-up with one line (app/startup.py); `flask
run` also says in one line when the database cannot be reached."""

import gc

from app.startup import checked_app, flask_run_is_serving

app = checked_app(serving=flask_run_is_serving())
# The ~220 000 objects the app is built of live as long as the process: kept out of the
# collector's reach, a full collection looks only at what requests left behind. Without
# this each one walked them all, 30-250 ms with every request thread stopped: the tail of
# the served latency (bench/README.md, "Second pass").
gc.freeze()
