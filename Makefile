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

# Every command sees .venv as the active environment, whatever the caller
# activated: maturin develop builds for it, and the editable install and
# maturin develop configure pyo3 identically (so neither rebuilds pyo3).
export VIRTUAL_ENV := $(abspath $(VENV))

# The extension is built in place (remotemedia_ray/_native.*.so) in release mode.
MATURIN_DEVELOP := $(MATURIN) develop --release --skip-install

.PHONY: venv build lint test demo clean distclean

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
		PYO3_PYTHON=$(abspath $(PY)) cargo clippy --manifest-path $(CARGO_MANIFEST) \
			--all-targets --features python -- -D warnings; fi
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy remotemedia_ray
	$(PY) -m mypy.stubtest remotemedia_ray._native

## test: Rust kernel tests, lint, then every pytest suite (unit, native, integration)
test: build
	cargo test --manifest-path $(CARGO_MANIFEST)
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest tests

## demo: the dataset job on an embedded local Ray: examples/speech_prep.json over examples/audio
demo: venv
	RAY_AUTH_MODE=$${RAY_AUTH_MODE:-disabled} $(VENV)/bin/remotemedia-ray run examples/speech_prep.json \
		-i examples/audio -o build/demo --overwrite
	@echo "outputs: build/demo (Parquet shards per sink, metrics.json)"

## clean: remove build outputs and caches (keeps .venv; the next build redoes the extension)
clean:
	rm -rf rust_ext/target target build dist *.egg-info
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -f remotemedia_ray/_native*.so $(NATIVE_STAMP)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

## distclean: clean, and remove .venv too
distclean: clean
	rm -rf $(VENV)
