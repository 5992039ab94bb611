# Every target builds its own virtual environment when it is missing, so a
# fresh checkout needs nothing but a Python 3.10+ interpreter.
#
# The tests, the demo and the benchmarks run logship as users get it: the
# wheel is built (python -m build: the sdist first, the wheel from the sdist)
# and installed into the virtual environment, never the source tree, so a
# module the distribution leaves out fails here before it fails for a user.
# `make dev` swaps in an editable install for working on the code; the next
# `make test` puts the wheel back.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DIST   := dist
# The suite runs in four processes (pytest-xdist): its tests mostly wait on
# subprocesses, sockets and deadlines (two processes keep two cores less
# than half busy), so four take about three quarters of the time of two.
# The packaging tests share one process (loadgroup), building once.
# Extra pytest arguments: make test PYTEST_ARGS='-k spill -x'
PYTEST_JOBS ?= 4
PYTEST_ARGS ?=
PYTEST_OPTS := -n $(PYTEST_JOBS) --dist loadgroup $(PYTEST_ARGS)

# A real Fluent Bit for the protocol and fleet tests (tests/fluentbit.py),
# where the workplace keeps one: beside this checkout, or beside the folder
# that holds it (a git worktree); the tests that need it are skipped, saying
# why, without.
FLUENT_BIT ?= $(firstword $(wildcard $(abspath ../shared/aggregators/fluent-bit) \
	$(abspath ../../shared/aggregators/fluent-bit)))
export FLUENT_BIT

# What the distributions are built from. The folders are listed as well, so
# that deleting a module rebuilds them too.
DIST_SOURCES := setup.cfg pyproject.toml MANIFEST.in README.md \
	$(shell find logship -name __pycache__ -prune -o -print)

.PHONY: demo dev dist test test-all suite lint typecheck bench docs clean
.PRECIOUS: $(VENV)/.installed-%

# pip and build, the tools the other targets start from.
$(VENV)/.tools:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip build
	touch $@

# A clean build: stale egg-info from an earlier build would add the files it
# lists to the sdist.
$(DIST)/.built: $(DIST_SOURCES) | $(VENV)/.tools
	rm -rf $(DIST) *.egg-info
	$(BIN)/python -m build --outdir $(DIST) . > $(VENV)/build.log 2>&1 || \
		{ cat $(VENV)/build.log; exit 1; }
	touch $@

dist: $(DIST)/.built

# The wheel with an extra (test, docs), replacing whatever logship the
# environment held: an editable install from `make dev`, or one under the
# distribution's former name, logship.
$(VENV)/.installed-%: $(DIST)/.built
	$(BIN)/python -m pip uninstall --quiet --quiet --yes logship pylogship
	$(BIN)/python -m pip install --quiet "$$(echo $(DIST)/pylogship-*.whl)[$*]"
	touch $@

# The wheel alone: the demo needs nothing more.
$(VENV)/.installed-wheel: $(DIST)/.built
	$(BIN)/python -m pip uninstall --quiet --quiet --yes logship pylogship
	$(BIN)/python -m pip install --quiet $(DIST)/pylogship-*.whl
	touch $@

demo: $(VENV)/.installed-wheel
	$(BIN)/logship demo

# For working on logship: the source tree installed in editable mode, with the
# test tools. `make test` replaces it with the wheel again.
dev: $(VENV)/.tools
	$(BIN)/python -m pip uninstall --quiet --quiet --yes logship pylogship
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*

lint: $(VENV)/.installed-test
	$(BIN)/ruff check logship tests benchmarks examples
	$(BIN)/ruff format --check logship tests benchmarks examples

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# The entry point, not `python -m pytest`, which would put the working
# directory, this checkout, first on sys.path.
suite: $(VENV)/.installed-test
	$(BIN)/pytest $(PYTEST_OPTS)

test: lint typecheck suite

# The suite on every CPython from 3.10 to 3.13 found on this machine, each in
# its own .venv-3.X with the wheel built once; tools/test-all says which.
# SKIP names versions to leave out (.ci/run: the one `make test` just ran).
test-all: $(DIST)/.built
	tools/test-all $(DIST) $(SKIP) -- $(PYTEST_OPTS)

# The [bench] extra names the peers' packages: one that cannot be installed
# is reported as skipped by run.py instead of stopping the benchmark (see
# benchmarks/install.py); the stamp is left out then, so the next run tries again.
$(VENV)/.installed-bench: $(DIST)/.built benchmarks/install.py
	$(BIN)/python -m pip uninstall --quiet --quiet --yes logship pylogship
	$(BIN)/python benchmarks/install.py $(DIST)/pylogship-*.whl; rc=$$?; \
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
	rm -rf $(VENV) $(VENV)-3.* $(DIST) build site *.egg-info .pytest_cache .mypy_cache .ruff_cache .ci-prepare.log
