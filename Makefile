SHELL := /bin/bash
# Two commands for a fresh machine (see README): `make demo` and `make test`.
# Both install what they need from Debian's packages when run as root.
SWIFT ?= swift
PYTHON ?= python3

.PHONY: all deps build module test unit e2e demo demo-stop bench soak fuzz sanitizers clean install uninstall

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

# Installs like a Debian admin expects (see scripts/install.sh): DESTDIR, PREFIX (/usr/local),
# SYSCONFDIR (/etc); BUILD=debug installs the test build instead of building release.
BUILD ?= release
install: module
	@if [ "$(BUILD)" = release ]; then $(SWIFT) build -c release --product handoffd && $(SWIFT) build -c release --product handoff-exec; fi
	BUILD=$(BUILD) scripts/install.sh install

uninstall:
	scripts/install.sh uninstall

clean:
	$(SWIFT) package clean
	$(MAKE) -C apache clean

# Benchmarks (release build; not part of `make test`): writes bench/results/REPORT.md.
bench: deps module
	$(PYTHON) bench/run.py

# libFuzzer targets (not in CI): the handoff JSON decoder (its fast reader against the general one), the
# JSON pull reader against Foundation, the SSE parser, handoff records over
# real sockets. FUZZ_RUNS inputs each, starting from the committed seeds in fuzz/corpus; new
# inputs and crashes go under /tmp/handoff-fuzz, never into the tree.
FUZZ_RUNS ?= 200000
FUZZERS = handoff-request json-reader sse-parser handoff-record
fuzz:
	# One -sanitize flag that names both: swiftc keeps only the last of several.
	cd fuzz && $(SWIFT) build -c debug --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address --scratch-path ../.build-fuzz
	@for f in $(FUZZERS); do \
		mkdir -p /tmp/handoff-fuzz/$$f; \
		echo "== fuzz-$$f: $(FUZZ_RUNS) runs"; \
		.build-fuzz/debug/fuzz-$$f -runs=$(FUZZ_RUNS) -max_len=65536 -print_final_stats=1 \
			-artifact_prefix=/tmp/handoff-fuzz/$$f- /tmp/handoff-fuzz/$$f fuzz/corpus/$$f 2>&1 \
			| grep -E "^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)" || exit 1; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# A long run (not in CI): SOAK_STREAMS short streams through the daemon; descriptors and RSS at
# the end must be within 2% of their values after the first 10 000.
SOAK_STREAMS ?= 1000000
soak:
	$(SWIFT) build -c release --product handoffd
	$(SWIFT) build -c release --product handoff-bench
	$(PYTHON) bench/soak.py --streams $(SOAK_STREAMS)

# The Swift tests under ThreadSanitizer, then AddressSanitizer (not in CI; each builds apart).
sanitizers:
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	$(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan
