# Two commands for a new user: `make demo` and `make test`. Both create the virtual environment
# and install everything first; both are safe to run again.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint bench gpu-bench compose-check airflow stop db-stop clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[test,celery,kubernetes]"
	touch $(STAMP)

demo: install
	$(BIN)/python scripts/demo.py

# The tests need Debian's chromium (the report and the Airflow UI in a browser), docker-compose
# (validating the scale-out stack without an engine) and redis-server (the Celery broker of the
# distributed-path test); installed once, here, as the tests' set-up.
test: install
	@command -v chromium >/dev/null && command -v docker-compose >/dev/null && command -v redis-server >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium docker-compose redis-server; }
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The inner loop: the unit tests (no model training, stack or browser), a few minutes.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# The real stack in the background (api-server, scheduler, dag-processor, triggerer); `make stop` ends it.
# SWEEP_EXECUTOR=CeleryExecutor adds Redis and Celery workers (queue gpu and default).
airflow: install
	$(BIN)/python scripts/stack.py start

stop: install
	$(BIN)/python scripts/stack.py stop

# BENCH_JSON=out.json writes the figures; BENCH_DATA points at BigCloneBench subsets.
bench: install
	$(BIN)/python scripts/bench.py $(if $(BENCH_DATA),--data $(BENCH_DATA)) $(if $(BENCH_JSON),--json $(BENCH_JSON))

# On a GPU machine: steps/s, samples/s and MFU per model, eager and compiled (cold and warm cache),
# with and without checkpointing for the large tier, T5's attention paths, the saves, and the plan's
# sweep GPU-hours naive against every saving (scripts/gpu_bench.py); JSON and Markdown. On a lent
# machine without this venv: scripts/device_gpu_bench.sh (docs/gpu-check.md).
gpu-bench: install
	$(BIN)/python scripts/gpu_bench.py --json gpu-bench.json --markdown gpu-bench.md

# docker-compose.yml and the Dockerfile run for real with podman, every service on the host network
# (deploy/compose-check/): builds local base images (once) and the image, brings the stack up, runs
# the small tier through the REST API, restarts a GPU worker mid-run, removes everything. Not in
# `make test`: the first run builds for about 10 minutes (README, "The compose stack, checked").
compose-check: install
	$(BIN)/python -m pip install --quiet podman-compose==1.6.0
	$(BIN)/python scripts/compose_check.py

db-stop: install
	$(BIN)/python -m training db stop

clean: db-stop
	rm -rf .sweep reports
