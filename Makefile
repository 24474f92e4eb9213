# One command for each habit. `make setup` is idempotent; every other target runs it first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# Debian packages the tests need (installed when missing; CI and fresh machines have none).
APT_PACKAGES ?= mosquitto victoria-metrics influxdb chromium
STAMP   := $(VENV)/.installed

.PHONY: setup run simulate test test-fast bench bench-quick lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

SPEED ?= 1

run: setup
	$(BIN)/streetlight stack --speed $(SPEED)

simulate: setup
	$(BIN)/streetlight simulate streetlight/samples/scenario_sample_town.yaml

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python -m benchmarks.kernel
	$(BIN)/python -m benchmarks.simulation
	$(BIN)/python -m benchmarks.gateway
	$(BIN)/python -m benchmarks.ingest

bench-quick: setup
	$(BIN)/python -m benchmarks.kernel --quick --json
	$(BIN)/python -m benchmarks.simulation --quick --json
	$(BIN)/python -m benchmarks.gateway --quick --json
	$(BIN)/python -m benchmarks.ingest --quick --json

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
