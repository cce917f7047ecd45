# The two commands: `make run` (the product, zero setup) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/lock.txt
PROD_LOCK := requirements/prod.lock
STAMP := $(VENV)/.installed-$(shell sha256sum $(LOCK) 2>/dev/null | cut -c1-16)
ARGS ?=

.PHONY: run test install lint typecheck check lock bench clean-var compose-smoke

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

## make lock: re-resolve both locks from pyproject.toml (needs uv): requirements/lock.txt with
## every extra (make run, make test, CI), and requirements/prod.lock without any (the container
## image), held to the same versions.
lock:
	uv pip compile pyproject.toml --all-extras -p 3.11 --generate-hashes -o $(LOCK)
	uv pip compile pyproject.toml -p 3.11 --generate-hashes -c $(LOCK) -o $(PROD_LOCK)

## make compose-smoke: build the image, start docker/compose.yaml with throwaway secrets, wait
## for every service to be healthy, ask /readyz, take it down (needs Docker and compose).
compose-smoke:
	docker/compose-smoke

bench: install
	$(PY) -m hitl.devstack exec -- $(PY) -m bench.engine --quick

clean-var:
	$(PY) -m hitl.devstack stop || true
	rm -rf var
