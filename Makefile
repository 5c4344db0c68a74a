# One venv for everything; `make test` works on a fresh machine with no step by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint unit integration demo bench bench-store clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check trafficshift tests benchmarks
	$(BIN)/ruff format --check trafficshift tests benchmarks
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

test: lint
	$(BIN)/pytest -q --cov --cov-report=term-missing:skip-covered

demo: $(STAMP)
	$(BIN)/python -m benchmarks.demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks.cutover

# The state store's latency and the event-loop stall it causes at 200 apps (no Docker; ~5 min).
bench-store: $(STAMP)
	$(BIN)/python -m benchmarks.store_loop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
