# Developer commands. A fresh clone needs only python3.11 and cargo on PATH:
# `make test` creates .venv, installs everything and builds the extension.

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
MATURIN := $(VENV)/bin/maturin
CARGO_MANIFEST := rust_ext/Cargo.toml
RUST_SOURCES := $(shell find rust_ext/src -name '*.rs') rust_ext/Cargo.toml rust_ext/Cargo.lock
# Paths ruff checks; those not created yet are skipped.
LINT_PATHS := $(wildcard remotemedia_ray tests benchmarks examples)

# Stamps live inside .venv, so deleting the venv also forgets them.
INSTALL_STAMP := $(VENV)/.install.stamp
NATIVE_STAMP := $(VENV)/.native.stamp
LHOTSE_STAMP := $(VENV)/.lhotse.stamp

# Every command sees .venv as the active environment, whatever the caller
# activated: maturin develop builds for it, and the editable install and
# maturin develop configure pyo3 identically (so neither rebuilds pyo3).
export VIRTUAL_ENV := $(abspath $(VENV))

# The extension is built in place (remotemedia_ray/_native.*.so) in release mode, with the
# test hooks (private submodule _native._testing) that wheels built from pyproject.toml lack.
MATURIN_DEVELOP := $(MATURIN) develop --release --skip-install --features test-hooks

.PHONY: venv build lint test test-deps demo clean distclean bench bench-history bench-smoke bench-check

## venv: create .venv, install the package editable with dev extras, build the extension
venv: $(NATIVE_STAMP)

# Python dependencies and the editable install (whose metadata carries the
# Cargo version): redone when pyproject.toml or Cargo.toml change.
$(INSTALL_STAMP): pyproject.toml rust_ext/Cargo.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

# The release extension: rebuilt whenever a Rust source or the Cargo manifest changes.
$(NATIVE_STAMP): $(INSTALL_STAMP) $(RUST_SOURCES)
	$(MATURIN_DEVELOP)
	touch $@

## build: (re)build the extension in release mode (a no-op for cargo when nothing changed)
build: $(INSTALL_STAMP)
	$(MATURIN_DEVELOP)
	touch $(NATIVE_STAMP)

## lint: rustfmt + clippy (when installed), ruff, mypy, stubtest of the extension stub
lint: venv
	if cargo fmt --version >/dev/null 2>&1; then cargo fmt --manifest-path $(CARGO_MANIFEST) --check; fi
	if cargo clippy --version >/dev/null 2>&1; then \
		for features in python test-hooks; do \
			PYO3_PYTHON=$(abspath $(PY)) cargo clippy --manifest-path $(CARGO_MANIFEST) \
				--all-targets --features $$features -- -D warnings || exit 1; done; fi
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy remotemedia_ray
	$(PY) -m mypy.stubtest remotemedia_ray._native

## test: Rust kernel tests, lint, every pytest suite (unit, native, integration), then the asv smoke pass
# With CI set (CI=true), a skipped test fails (tests/conftest.py): CI runs every test.
test: build test-deps $(LHOTSE_STAMP)
	cargo test --manifest-path $(CARGO_MANIFEST)
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest tests
	$(MAKE) --no-print-directory bench-smoke

# The lhotse extra (pyproject.toml), for the test that loads the job's Lhotse output:
# installed on its own, so the package is not rebuilt and `make venv` stays small.
$(LHOTSE_STAMP): $(INSTALL_STAMP) pyproject.toml
	$(PY) -m pip install $$($(PY) -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["lhotse"]))')
	touch $@

## test-deps: the system programs tests need (espeak-ng), installed with apt-get when missing
# espeak-ng synthesizes the speech of the VAD accuracy tests. Installing runs apt-get as
# root, or through sudo when this user is not root and sudo exists (as bench-check does).
TEST_PROGRAMS := espeak-ng
test-deps:
	@missing=""; \
	for program in $(TEST_PROGRAMS); do \
		command -v $$program >/dev/null 2>&1 || missing="$$missing $$program"; \
	done; \
	if [ -n "$$missing" ]; then \
		if ! command -v apt-get >/dev/null 2>&1; then \
			echo "test-deps: missing$$missing, and no apt-get to install it; install it, then rerun" >&2; \
			exit 1; \
		fi; \
		if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
		elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
		else echo "test-deps: installing$$missing needs root (or sudo); install it, then rerun" >&2; exit 1; \
		fi; \
		echo "test-deps: installing$$missing (apt-get)"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get -qq update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends $$missing \
			>/dev/null || exit 1; \
		for program in $(TEST_PROGRAMS); do \
			command -v $$program >/dev/null 2>&1 || { echo "test-deps: $$program is still missing" >&2; exit 1; }; \
		done; \
	fi

## demo: the dataset job on an embedded local Ray: examples/speech_prep.json over examples/audio
demo: venv
	RAY_AUTH_MODE=$${RAY_AUTH_MODE:-disabled} $(VENV)/bin/remotemedia-ray run examples/speech_prep.json \
		-i examples/audio -o build/demo --overwrite
	@echo "outputs: build/demo (Parquet shards per sink, metrics.json)"

# -- benchmarks (asv; configuration benchmarks/asv.conf.json, suites in benchmarks/suites) --
# asv runs in benchmarks/ (the configuration's paths are relative to it), every benchmark
# in a freshly spawned process (Ray does not survive fork). `asv machine --yes` records
# this machine (~/.asv-machine.json) so that `asv run` asks no questions.
ASV := $(abspath $(VENV))/bin/asv
ASV_RUN := $(ASV) run --launch-method=spawn --show-stderr
# Extra `asv run` flags of bench and bench-history: quick (each benchmark once) by default;
# `make bench BENCH_FLAGS=` measures properly (repeats and two rounds: much longer).
BENCH_FLAGS ?= --quick
# bench-history: how many commits, back from HEAD.
N ?= 5
# bench-smoke: every benchmark at its smallest parameters (asv matches `name(param, ...)`):
# each node in both runtimes on 1 s of stereo, every speedup, every manifest on the local
# runtime, one manifest and one batch size on Ray (each Ray benchmark process starts a Ray),
# the dataset job on the local runtime.
BENCH_SMOKE := --bench "^nodes\.NativeSpeedup\." \
	--bench "^chain\." \
	--bench "^nodes\.\w+Node\.\w+\('\w+', 1\.0, 2\)" \
	--bench "^pipelines\.\w+\.\w+\(('\w+', 'local'|'speech_prep', 'ray')\)" \
	--bench "^transfer\.\w+\.\w+\(1000\)" \
	--bench "^job\.\w+\.\w+\('local'\)"
DASHBOARD := $(abspath $(PY)) -m benchmarks.check_dashboard

## bench: a quick asv pass over HEAD, built in asv's virtualenv (as bench-history builds), then the dashboard
# One environment for both targets, so the dashboard shows one series per benchmark (a
# --python=same run would be recorded under another environment name: a second series).
bench: venv
	cd benchmarks && $(ASV) machine --yes >/dev/null
	cd benchmarks && $(ASV_RUN) $(BENCH_FLAGS) HEAD^!
	cd benchmarks && $(ASV) publish
	$(DASHBOARD) offline benchmarks/html
	@echo "dashboard: benchmarks/html (make bench-check; or python -m http.server -d benchmarks/html)"

## bench-history: build the last N commits (N=5) as PEP 517 wheels in asv virtualenvs, benchmark, publish
# Benchmarks already measured (or failed) for a commit in its virtualenv on this machine
# are skipped, and a commit with nothing left to run is not built again. A benchmark that
# fails on an old commit (asv exits 2) is recorded as failed; the dashboard is still published.
bench-history: venv
	cd benchmarks && $(ASV) machine --yes >/dev/null
	git rev-list --max-count=$(N) HEAD | { cd benchmarks && \
		$(ASV_RUN) --skip-existing $(BENCH_FLAGS) HASHFILE:-; } \
		|| { test $$? -eq 2 && echo "bench-history: some benchmarks failed (see above)"; }
	cd benchmarks && $(ASV) publish
	$(DASHBOARD) offline benchmarks/html

## bench-smoke: every benchmark once at its smallest parameters, in .venv, nothing saved; fails if one fails
bench-smoke: venv
	cd benchmarks && $(ASV) machine --yes >/dev/null
	cd benchmarks && $(ASV_RUN) --quick --dry-run --python=same $(BENCH_SMOKE)

## bench-check: open the published dashboard in headless Chromium (installed if missing), check it draws
bench-check: venv
	$(DASHBOARD) check benchmarks/html --screenshot benchmarks/html-screenshot.png

## clean: remove build outputs and caches (keeps .venv; the next build redoes the extension)
clean:
	rm -rf rust_ext/target target build dist *.egg-info
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -f remotemedia_ray/_native*.so $(NATIVE_STAMP)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

## distclean: clean, and remove .venv too
distclean: clean
	rm -rf $(VENV)
