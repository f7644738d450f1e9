# Sky Port. `make start` runs the daemon; `make test` runs the whole test suite. Both install what is missing.
SHELL := /bin/bash
export SWM_SPOOL ?= $(HOME)/.swm/spool
export SWM_HOME ?= $(HOME)/.swm

.PHONY: all install build start test test-only bench bench-submit bench-lifecycle bench-transfer bench-forward bench-azure-first-job \
        protocol-schema azure-smoke clean

all: build

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.installed

# Compiled only when a source changed: a second `make start` starts at once.
SOURCES := $(shell find core node-agent gates terminal-protocol spool-bootstrap terminal test bench container -name '*.ts' 2>/dev/null) tsconfig.json

dist/.built: node_modules/.installed $(SOURCES)
	npx tsc -p tsconfig.json
	@chmod +x dist/core/main.js dist/gates/main.js dist/terminal/main.js dist/spool-bootstrap/main.js
	@touch $@

build: dist/.built

# Bootstrap a spool with defaults if there is none, then run swm-core (and its managed local gate) in the foreground.
start: build
	@if [ ! -f "$(SWM_SPOOL)/config.json" ]; then node dist/spool-bootstrap/main.js --yes; fi
	node dist/core/main.js --pretty

test: build
	@bash scripts/install-system-deps.sh
	npx mocha 'dist/test/**/*.test.js'

# Run the tests without reinstalling (for a quick loop).
test-only:
	npx tsc -p tsconfig.json && npx mocha 'dist/test/**/*.test.js'

protocol-schema: build
	node dist/terminal-protocol/export-schema.js terminal-protocol/schema.json

bench: bench-submit bench-lifecycle bench-transfer bench-forward bench-azure-first-job

bench-submit: build
	node dist/bench/submit.js

bench-lifecycle: build
	node dist/bench/lifecycle.js

bench-transfer: build
	node dist/bench/transfer.js

bench-forward: build
	node dist/bench/forward.js

# The first job on Azure, simulated against the fake ARM with a latency model per operation (no cloud needed).
bench-azure-first-job: build
	node dist/bench/azure-first-job.js

# Create and delete a real partition on Azure (needs credentials in the environment; never run in CI).
azure-smoke: build
	node dist/gates/azure/smoke.js

clean:
	rm -rf dist node_modules

include container/make-targets.mk
