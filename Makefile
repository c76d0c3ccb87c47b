# The two commands a new user needs are `make run` and `make test`; each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := shardmgr workers fakegateway examples tests bench mutation
# Most tests wait on real processes, sockets and short protocol timers rather than compute, so
# four test processes fit two cores; one file's tests stay in one process (shared fixtures).
PARALLEL ?= -n 4 --dist loadfile

.PHONY: run test bench chaos lint typecheck venv system-deps clean mutate coverage

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null
	@$(BIN)/python -m pip install -q -e '.[dev,redis]'
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@scripts/system-deps.sh

run: $(STAMP)
	@$(BIN)/python -m shardmgr demo

test: $(STAMP) system-deps
	@$(BIN)/ruff check $(LINT_PATHS)
	@$(BIN)/ruff format --check $(LINT_PATHS)
	@$(BIN)/mypy
	@SHARDMGR_REQUIRE_SERVERS=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(PARALLEL)

bench: $(STAMP)
	@$(BIN)/python -m bench

chaos: $(STAMP)
	@$(BIN)/python -m tests.chaos.run

# Mutation testing of the core rules (mutation/targets.toml); not part of `make test`.
# `make mutate TARGETS="redaction checkpoint"`: only targets whose name contains one of the words.
mutate: $(STAMP)
	@$(BIN)/python mutation/run.py $(TARGETS)

# Line and branch coverage of the whole suite, worker and supervisor subprocesses included
# (scripts/coverage.toml); report on stdout, HTML in build/coverage/html. Not part of make test.
COVERAGE := $(BIN)/python -m coverage
coverage: $(STAMP) system-deps
	@rm -rf build/coverage && mkdir -p build/coverage
	@export COVERAGE_FILE=$(CURDIR)/build/coverage/.coverage SHARDMGR_REQUIRE_SERVERS=1; \
	$(COVERAGE) run --rcfile=scripts/coverage.toml -m pytest -q -p no:cacheprovider $(TESTS); \
	status=$$?; \
	$(COVERAGE) combine --rcfile=scripts/coverage.toml -q && \
	$(COVERAGE) html --rcfile=scripts/coverage.toml -q && \
	$(COVERAGE) report --rcfile=scripts/coverage.toml; \
	exit $$status

lint: $(STAMP)
	@$(BIN)/ruff check $(LINT_PATHS)
	@$(BIN)/ruff format --check $(LINT_PATHS)
	@$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
