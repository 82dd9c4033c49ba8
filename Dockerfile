# One image for every process: the API (default command), the Celery worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. Runtime only: tests,
# lint tools and the embedded test services (requirements-dev.txt) stay out of the image.
COPY requirements.txt .
RUN pip install -r requirements.txt

# A home directory for gunicorn's control socket (~/.gunicorn); the code stays root-owned.
RUN groupadd --system gatehouse \
    && useradd --system --gid gatehouse --create-home --home-dir /home/gatehouse gatehouse

COPY . .
# create_app() makes sure the instance folder exists, so it must be writable.
RUN mkdir -p /app/instance && chown gatehouse:gatehouse /app/instance

USER gatehouse

# Production unless told otherwise: start-up stops if SECRET_KEY, ENCRYPTION_KEYS or
# DATABASE_URL is missing. Gunicorn takes its settings from /app/gunicorn.conf.py (the
# measured production recommendation); GUNICORN_CMD_ARGS overrides them.
ENV APP_ENV=production

EXPOSE 8000
# gunicorn.conf.py (in /app) adds up the workers' Prometheus metrics.
CMD ["gunicorn", "-b", "0.0.0.0:8000", "wsgi:app"]
