# The local gateway's targets; included by the root Makefile (which provides NODE_STAMP,
# JAVA_STAMP, PATH and the synth-dev target of mk/cdk.mk).

# `make dev-gateway GATEWAY_PORT=3002 STAGE=dev GATEWAY_FLAGS="--idle-timeout 60"`
GATEWAY_PORT ?= 3001
GATEWAY_FLAGS ?=
# Where cargo puts host debug builds (the handlers the gateway runs, and the gateway itself).
GATEWAY_BIN_DIR := $(or $(CARGO_TARGET_DIR),target)/debug

.PHONY: dev-gateway gateway-bins gateway-e2e-deps gateway-test

gateway-bins: ## build the handler binaries and the local gateway (host, debug)
	cargo build --workspace --bins

# What the gateway's end-to-end tests read: the handlers, the test handler example, the template.
gateway-e2e-deps: $(NODE_STAMP) $(JAVA_STAMP) gateway-bins
	cargo build -p local-gateway --examples
	$(MAKE) --no-print-directory synth-dev STAGE=dev

gateway-test: gateway-e2e-deps ## the local gateway's unit and end-to-end tests
	cargo test -p local-gateway

# The gateway prints the wscat command once ready. Ctrl-C (SIGINT) or SIGTERM stops it: it
# closes the clients, runs their $disconnect, and stops every handler process and DynamoDB Local.
dev-gateway: $(NODE_STAMP) $(JAVA_STAMP) gateway-bins ## run the real handlers behind the local gateway on 127.0.0.1:GATEWAY_PORT
	$(MAKE) --no-print-directory synth-dev STAGE=$(STAGE)
	exec $(GATEWAY_BIN_DIR)/local-gateway --template cdk.out/Realtime-$(STAGE).template.json \
	  --stage $(STAGE) --port $(GATEWAY_PORT) --bin-dir $(GATEWAY_BIN_DIR) $(GATEWAY_FLAGS)
