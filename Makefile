# The two commands: `make run` (the product, zero setup) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed-$(shell sha256sum $(LOCK) 2>/dev/null | cut -c1-16)
ARGS ?=

.PHONY: run test install lint typecheck check lock bench clean-var

$(STAMP): $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## make run: a private PostgreSQL and Redis under var/ (unless DATABASE_URL / REDIS_URL are
## set), migrations, demo data, then web + worker + beat. Ctrl-C stops what it started.
run: install
	$(PY) -m hitl.devstack run $(RUN_ARGS)

## make test: the whole suite on real PostgreSQL and Redis (private ones unless set).
test: install
	SECRET_KEY=test-only-not-secret HITL_AUDIT_KEYS=test:test-only-audit-key \
		HITL_EXTRA_STEP_KINDS=tests.kinds $(PY) -m hitl.devstack exec -- $(PY) -m pytest $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	SECRET_KEY=typecheck HITL_AUDIT_KEY=typecheck-not-secret DATABASE_URL=$${DATABASE_URL:-postgres://localhost/typecheck} \
		$(VENV)/bin/mypy hitl workflows bench

## make check: lint, types, and migrations that match the models.
check: lint typecheck
	SECRET_KEY=check HITL_AUDIT_KEY=check-only-not-secret $(PY) -m hitl.devstack exec -- $(PY) manage.py makemigrations --check --dry-run

## make lock: re-resolve requirements/lock.txt from pyproject.toml (needs uv).
lock:
	uv pip compile pyproject.toml --all-extras -p 3.11 --generate-hashes -o $(LOCK)

bench: install
	$(PY) -m hitl.devstack exec -- $(PY) -m bench.engine --quick

clean-var:
	$(PY) -m hitl.devstack stop || true
	rm -rf var
