# The two commands of the README: `make up` runs the whole system, `make test` runs every test.
# Only Python 3.11+ and make are needed: uv is bootstrapped into .tools/ when it is not on PATH.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
SYNC_STAMP := .venv/.synced

.PHONY: up test test-compose chaos-long bench-compare lint typecheck check bench sync clean

up: $(SYNC_STAMP)
	$(UV) run --no-sync jobs-dev up

test: $(SYNC_STAMP)
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy
	$(UV) run --no-sync pytest

# The container path for real (also part of `make test`): installs/starts a Docker engine and
# Compose when missing (docker/engine.sh), builds the images, `docker compose up --wait`, runs
# every email job through the stack, `down -v`. Skips only where no engine can run.
test-compose: $(SYNC_STAMP)
	$(UV) run --no-sync pytest tests/compose

# The long chaos run (10,000 jobs, about 4 minutes): the short form runs inside `make test`.
chaos-long: $(SYNC_STAMP)
	JOBS_CHAOS_LONG=1 $(UV) run --no-sync pytest tests/chaos/test_chaos.py -q -s

lint: $(SYNC_STAMP)
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .

typecheck: $(SYNC_STAMP)
	$(UV) run --no-sync mypy

bench: $(SYNC_STAMP)
	$(UV) run --no-sync python -m bench $(BENCH_ARGS)

# Ours beside graphile-worker and pgqueuer, same run, same method (installs the peers into .cache/).
bench-compare: $(SYNC_STAMP)
	$(UV) run --no-sync python -m bench compare $(BENCH_ARGS)

sync: $(SYNC_STAMP)

$(SYNC_STAMP): uv.lock pyproject.toml $(wildcard */pyproject.toml functions/*/pyproject.toml) | $(UV)
	$(UV) sync --all-packages --locked
	@touch $@

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet uv

clean:
	rm -rf .venv .tools .cache .pytest_cache .mypy_cache .ruff_cache
