# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: install run test lint format bench fuzz clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Embedded defaults: SQLite in instance/, Celery eager, mail to the log.
run: install
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/flask --app wsgi bootstrap
	$(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT)

# Real PostgreSQL and Redis (standard local ports; see README to point elsewhere).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Schema fuzzing at length (make test runs a short pass): every operation of /openapi.json
# as an API key, the root key and a user token; prints the counts per run.
FUZZ_EXAMPLES ?= 25
FUZZ_SEED ?= 20261130
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SEED=$(FUZZ_SEED) $(BIN)/python -m pytest tests/test_fuzz.py -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
