# edgefleet: `make dev` runs the whole stack, `make test` the suite, `make lint` the checks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
ARGS ?=

.PHONY: install dev test test-sqlite lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "edgefleet needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(PY) scripts/devstack.py $(ARGS)

# Uses the PostgreSQL on 127.0.0.1:5432 when it answers (SQLite otherwise) and a real Redis.
test: $(STAMP)
	eval "$$($(PY) scripts/detect_services.py)" && FLEET_ENV=test $(PY) -m pytest $(PYTEST_ARGS)

test-sqlite: $(STAMP)
	FLEET_ENV=test FLEET_DATABASE_URL=sqlite:///$(CURDIR)/var/test-sqlite.sqlite3 $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) scripts/check_workflow_boundary.py
	$(PY) scripts/check_import_cycles.py
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	FLEET_ENV=test $(PY) manage.py makemigrations --check --dry-run
	FLEET_ENV=test $(PY) manage.py check

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
