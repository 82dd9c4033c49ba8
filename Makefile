# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# `make run` installs the runtime requirements only; `make test` and `make lint` add the
# development ones (requirements-dev.txt: pytest, ruff, the embedded test services).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.dev-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 5000

PEER_VENV ?= .venv-bench-peer
PEER_STAMP := $(PEER_VENV)/.installed-$(shell cat bench/peers/requirements.txt | cksum | cut -d' ' -f1)
# Granian and orjson, measured by the bench against gunicorn and Flask's json (never in the
# service's venv: pip --target, put on the served app's PYTHONPATH by bench/run.py).
VARIANTS_DIR ?= .venv-bench-variants
VARIANTS_STAMP := $(VARIANTS_DIR)/.installed-$(shell cat bench/variants/requirements.txt | cksum | cut -d' ' -f1)

.PHONY: translations screenshots install install-runtime run test test-reliability lint format bench bench-compare bench-import bench-profile bench-rehash bench-webhooks bench-console bench-reset fuzz clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.runtime-*
	touch $(RUNTIME_STAMP)

# The development set includes the runtime one, so it satisfies `make run` too.
$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.dev-* $(VENV)/.runtime-*
	touch $(DEV_STAMP) $(RUNTIME_STAMP)

install-runtime: $(RUNTIME_STAMP)

install: $(DEV_STAMP)

# Embedded defaults: SQLite in instance/, Celery eager, mail to the outbox. FLASK_RUN_HOST
# and FLASK_RUN_PORT tell config.py the address, so ISSUER (unless set) follows PORT.
run: install-runtime
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/flask --app wsgi bootstrap
	FLASK_RUN_HOST=$(HOST) FLASK_RUN_PORT=$(PORT) $(BIN)/flask --app wsgi run

# PostgreSQL and Redis: the local ones when they answer, else embedded ones (docs/development.md).
# The federation tests' upstream provider (tests/idp: panva's oidc-provider on node).
test: install tests/idp/node_modules
	$(BIN)/python -m pytest $(PYTEST_ARGS)

tests/idp/node_modules: tests/idp/package.json tests/idp/package-lock.json
	npm ci --prefix tests/idp --no-audit --no-fund
	touch tests/idp/node_modules

# Schema fuzzing at length (make test runs a short pass): every operation of /openapi.json
# as an API key, the root key and a user token; prints the counts per run.
FUZZ_EXAMPLES ?= 25
FUZZ_SEED ?= 20261130
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SEED=$(FUZZ_SEED) $(BIN)/python -m pytest tests/surfaces/test_fuzz.py -q $(PYTEST_ARGS)

# Faults and load on real processes: its own PostgreSQL and Redis (Debian's server binaries,
# never the shared ones), gunicorn, Celery worker and beat. About 10 minutes; see docs/development.md.
# RELIABILITY_SERVER=granian serves the API with Granian from $(VARIANTS_DIR) instead (issue 29).
test-reliability: install $(if $(filter granian,$(RELIABILITY_SERVER)),$(VARIANTS_STAMP))
	RELIABILITY_VARIANTS_PATH=$(VARIANTS_DIR) $(BIN)/python -m pytest reliability -v -o faulthandler_timeout=1200 $(PYTEST_ARGS)

# The real-browser test drives the system's Chromium (browser downloads are not used):
# install Debian's `chromium` with apt when it is missing and apt can run (root). On a
# machine without apt the suite still runs and says the browser test was left out.
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -n "$$CHROMIUM" ]; then \
		echo "browser: $$(command -v chromium || echo $$CHROMIUM)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "browser: no chromium and no apt-get as root; install Chromium or set CHROMIUM"; \
	fi

# The hosted pages' and mails' catalogues (app/translations): extract the messages of the
# code and templates (babel.cfg), merge them into each language's .po, compile the .mo
# files (committed; tests/ops/test_translations.py fails on a missing or stale one).
TRANSLATIONS := app/translations
translations: install
	$(BIN)/pybabel extract --no-location --sort-output -F babel.cfg -k lazy_gettext -k N_ -o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel update --no-fuzzy-matching -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS)
	$(BIN)/pybabel compile -d $(TRANSLATIONS)

# Screenshots of the hosted pages (docs/screenshots/*.png) from the page table of
# tests/surfaces/hosted_pages.py, in headless Chromium (`make browser`).
screenshots: install
	SCREENSHOTS=1 REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q -p no:randomly tests/surfaces/test_hosted_a11y.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The fastapi-users peer of the bench, in its own venv (never in the service's).
$(PEER_STAMP): bench/peers/requirements.txt
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet -r bench/peers/requirements.txt
	rm -f $(PEER_VENV)/.installed-*
	touch $(PEER_STAMP)

$(VARIANTS_STAMP): bench/variants/requirements.txt | $(BIN)/python
	rm -rf $(VARIANTS_DIR)
	$(BIN)/python -m pip install --quiet --no-deps --target $(VARIANTS_DIR) -r bench/variants/requirements.txt
	touch $(VARIANTS_STAMP)

# Figures of SPEC §9 beside the fastapi-users peer (bench/README.md); installs wrk if it can.
bench: install $(PEER_STAMP) $(VARIANTS_STAMP)
	BENCH_PEER_PYTHON=$(PEER_VENV)/bin/python BENCH_VARIANTS_PATH=$(VARIANTS_DIR) $(BIN)/python bench/run.py
	$(BIN)/python bench/rehash.py
	$(BIN)/python bench/import_users.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/console.py

# The first sign-in of an imported bcrypt user against a native one (bench/README.md).
bench-rehash: install
	$(BIN)/python bench/rehash.py

# Only the import figures (issue 24): users/s and peak RSS for 100 k and BENCH_USERS users.
bench-import: install
	$(BIN)/python bench/import_users.py

# What webhooks add to a user update (3 endpoints against none) and one worker's delivery
# rate to a local receiver (bench/README.md).
bench-webhooks: install
	$(BIN)/python bench/webhooks.py

# The admin console's pages, server time in the 1 000 000-user tenant (bench/README.md).
bench-console: install
	$(BIN)/python bench/console.py

# Where a request's CPU goes, in-process, against the bench database (bench/README.md).
bench-profile: install
	$(BIN)/python bench/profile.py

# gunicorn against Granian (or against orjson: BENCH_COMPARE=gunicorn,gunicorn+orjson), back
# to back, by server CPU per request and req/s (bench/README.md, "Server and JSON, measured").
bench-compare: install $(VARIANTS_STAMP)
	BENCH_VARIANTS_PATH=$(VARIANTS_DIR) $(BIN)/python bench/compare.py

# Drop the bench's databases (kept between runs so seeding happens once).
bench-reset: install
	BENCH_RESET=1 $(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(PEER_VENV) .pytest_cache .ruff_cache test-output
