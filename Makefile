# Two commands for a fresh machine (see README): `make demo` and `make test`.
# Both install what they need from Debian's packages when run as root.
SWIFT ?= swift
PYTHON ?= python3

.PHONY: all deps build module test unit e2e demo demo-stop bench clean

all: build module

deps:
	@scripts/install-deps.sh

# One configuration (debug) serves the tests and the demo; benchmarks build release apart.
build:
	$(SWIFT) build --build-tests

module:
	$(MAKE) -C apache

unit: build
	$(SWIFT) test --skip-build

e2e: build module
	$(PYTHON) -m pytest -q e2e

test: deps build module
	$(SWIFT) test --skip-build
	$(MAKE) -C apache check
	$(PYTHON) -m pytest -q e2e

demo: deps build module
	$(PYTHON) e2e/demo.py start

demo-stop:
	$(PYTHON) e2e/demo.py stop

clean:
	$(SWIFT) package clean
	$(MAKE) -C apache clean

# Benchmarks (release build; not part of `make test`): writes bench/results/REPORT.md.
bench: deps module
	$(PYTHON) bench/run.py
