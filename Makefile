# Every target builds its own virtual environment when it is missing, so a
# fresh checkout needs nothing but a Python 3.10+ interpreter. Each extra
# (test, bench, docs) is installed by the first target that needs it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck bench docs clean
.PRECIOUS: $(VENV)/.installed-%

$(VENV)/.installed-%: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

demo: $(VENV)/.installed-test
	$(BIN)/logship demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check logship tests benchmarks examples
	$(BIN)/ruff format --check logship tests benchmarks examples

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

# The [bench] extra names the peers' packages: one that cannot be installed
# is reported as skipped by run.py instead of stopping the benchmark (see
# benchmarks/install.py); the stamp is left out then, so the next run tries again.
$(VENV)/.installed-bench: setup.cfg pyproject.toml benchmarks/install.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python benchmarks/install.py; rc=$$?; \
	if [ $$rc -eq 0 ]; then touch $@; elif [ $$rc -ne 3 ]; then exit $$rc; fi

# About 13 minutes of both cores; BENCH_ARGS passes options to run.py, e.g.
# BENCH_ARGS="--only service --service-seconds 2" (docs/performance.md).
bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# The documentation site (mkdocs.yml): docs/ built into site/. Not part of
# `make test`; --strict fails the build on a broken link or a page missing
# from the nav.
docs: $(VENV)/.installed-docs
	$(BIN)/mkdocs build --strict --clean --site-dir site

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .mypy_cache .ruff_cache
