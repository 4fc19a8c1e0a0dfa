# The project's commands. `make dev` runs the local gateway; `make test` proves everything.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
# Project-local tools first: cargo-lambda and the linters from the venv, the CDK CLI from node_modules.
export PATH := $(VENV)/bin:$(ROOT)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
# Offline synth: no version check, no telemetry, no notices (cdk.json switches off the rest).
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_CLI_TELEMETRY := false
export DDB_LOCAL_TELEMETRY := 0
export CARGO_TERM_COLOR := never

VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
JAVA_STAMP := .local/java.ok

.PHONY: help
help: ## list the commands
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# ---- installs: each runs only when its inputs change ----
$(VENV_STAMP): tools/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# DynamoDB Local needs a Java runtime; install Debian's when the machine has none.
$(JAVA_STAMP):
	@command -v java >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; }
	@mkdir -p $(dir $@) && touch $@

.PHONY: deps
deps: $(VENV_STAMP) $(NODE_STAMP) $(JAVA_STAMP) ## install every tool the project needs

-include mk/*.mk

# ---- the two commands ----
.PHONY: dev test
dev: dev-gateway ## run the real handlers behind the local gateway on 127.0.0.1:3001, reloading what you edit (WATCH=0: not)

test: fmt-check clippy cdk-test rust-test web-test synth-bundled ## everything: format, lint, stack tests, Rust tests, browser test, bundled synth
	@echo "make test: all green"

# ---- Rust ----
.PHONY: fmt-check clippy handlers rust-test
fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets --locked -- -D warnings

handlers: ## build the handler binaries for this machine (what the local gateway runs)
	cargo build --workspace --bins --examples --locked

# One DynamoDB Local serves the whole run (each test makes its own tables); the gateway's
# end-to-end tests read the synthesized dev template.
rust-test: $(NODE_STAMP) $(JAVA_STAMP) handlers synth-dev
	cargo run --quiet --locked -p dynamodb-local --bin with-dynamodb -- \
	  cargo nextest run --workspace --locked --no-fail-fast
