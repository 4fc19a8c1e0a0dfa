# The local gateway's targets; included by the root Makefile (which provides NODE_STAMP,
# JAVA_STAMP, PATH and the synth-dev target of mk/cdk.mk).

# `make dev-gateway GATEWAY_PORT=3002 STAGE=dev GATEWAY_FLAGS="--idle-timeout 60"`
GATEWAY_PORT ?= 3001
GATEWAY_FLAGS ?=
# `make dev` watches the sources and reloads under the open connections; `make dev WATCH=0` does not.
WATCH ?= 1
# The synth the watching gateway runs on a stack change. Expanded here, not in the recipe: a
# recipe line that expands $(MAKE) is run even by `make -n`, which would start the gateway.
WATCH_SYNTH := $(MAKE) --no-print-directory synth-dev
# Where cargo puts host debug builds (the handlers the gateway runs, and the gateway itself).
GATEWAY_BIN_DIR := $(or $(CARGO_TARGET_DIR),target)/debug
# The local HS256 key: the value of the stage's Secrets Manager secret when the gateway runs
# it, and what `make token` signs with. Never committed (.local/ is ignored).
JWT_SECRET_FILE ?= .local/jwt-secret
# `make token USER=bob`: only a USER given on the command line counts (the environment's
# USER is the login name); alice otherwise. TOKEN_TTL is in seconds.
TOKEN_USER = $(if $(filter command line,$(origin USER)),$(USER),alice)
TOKEN_TTL ?= 43200
# The issuer and audience the stage's authorizer requires (JWT_ISSUER / JWT_AUDIENCE of the
# function whose local:binary is `authorizer`), read from the synthesized template when
# there is one; empty unless the stage sets them.
GATEWAY_TEMPLATE = cdk.out/Realtime-$(STAGE).template.json
authorizer_env = $(shell test -f $(GATEWAY_TEMPLATE) && node -p "Object.values(require('./$(GATEWAY_TEMPLATE)').Resources).filter((r) => (r.Metadata || {})['local:binary'] === 'authorizer').map((r) => ((r.Properties.Environment || {}).Variables || {})['$(1)']).find((v) => typeof v === 'string') || ''" 2>/dev/null)

.PHONY: dev-gateway gateway-bins gateway-e2e-deps gateway-test token

gateway-bins: ## build the handler binaries and the local gateway (host, debug)
	cargo build --workspace --bins

# What the gateway's end-to-end tests read: the handlers (authorizer and mint-token included),
# the test handler example, the template.
gateway-e2e-deps: $(NODE_STAMP) $(JAVA_STAMP) gateway-bins
	cargo build -p local-gateway --examples
	$(MAKE) --no-print-directory synth-dev STAGE=dev

gateway-test: gateway-e2e-deps ## the local gateway's unit and end-to-end tests
	cargo test -p local-gateway -p dynamodb-local

# 48 random bytes in hex, readable by its owner only. Written aside and hard-linked into place,
# which fails if another make got there first: then everyone signs with that one.
$(JWT_SECRET_FILE):
	@mkdir -p $(@D)
	@tmp=$$(mktemp $@.XXXXXX) && \
	  head -c 48 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$$tmp" && echo >> "$$tmp" && \
	  { ln "$$tmp" $@ 2>/dev/null && echo "Created $@, the local token key (keep it private; delete it to invalidate every local token)." >&2 || true; } ; \
	  rm -f "$$tmp"

# The gateway prints, once ready, a wscat command and the web client's address with a token for
# alice. Unless WATCH=0 it then watches the sources: a saved handler is rebuilt and swapped in,
# a changed stack re-synthesized and applied, open web pages told; connections stay open.
# Ctrl-C (SIGINT) or SIGTERM stops it: it closes the clients, runs their $disconnect, and stops
# every handler process and DynamoDB Local (which also die with it if it is killed).
dev-gateway: $(NODE_STAMP) $(JAVA_STAMP) gateway-bins $(JWT_SECRET_FILE) ## run the real handlers behind the local gateway on 127.0.0.1:GATEWAY_PORT
	$(MAKE) --no-print-directory synth-dev STAGE=$(STAGE)
	exec $(GATEWAY_BIN_DIR)/local-gateway --template $(GATEWAY_TEMPLATE) \
	  --stage $(STAGE) --port $(GATEWAY_PORT) --bin-dir $(GATEWAY_BIN_DIR) \
	  --jwt-secret-file $(JWT_SECRET_FILE) --web-dir web \
	  $(if $(filter 0,$(WATCH)),,--watch --build-command 'cargo build --workspace --bins' \
	    --synth-command '$(WATCH_SYNTH) STAGE=$(STAGE)') $(GATEWAY_FLAGS)

# Works with or without a running gateway. The token comes alone on the first line (for
# scripts: `make -s token USER=bob | head -n1`), then how to use it, written at once (by cat: the
# shell would write line by line), so that a reader that stops after the first line does
# not break the pipe.
token: $(JWT_SECRET_FILE) ## print a local token for USER (default alice) with a ready wscat command and web address
	@token=$$(cargo run --quiet -p realtime-auth --bin mint-token -- $(JWT_SECRET_FILE) '$(TOKEN_USER)' $(TOKEN_TTL) \
	  '$(call authorizer_env,JWT_ISSUER)' '$(call authorizer_env,JWT_AUDIENCE)') && \
	  ttl=$(TOKEN_TTL) && if [ $$ttl -ge 3600 ]; then valid="$$(( ttl / 3600 )) h"; else valid="$$(( ttl / 60 )) min"; fi && \
	  text="$$token"$$'\n'"  user $(TOKEN_USER), valid $$valid, signed with $(JWT_SECRET_FILE)"$$'\n' && \
	  text+="  wscat:       npx wscat -c \"ws://127.0.0.1:$(GATEWAY_PORT)/$(STAGE)?token=$$token\""$$'\n' && \
	  text+="  web client:  http://127.0.0.1:$(GATEWAY_PORT)/?token=$$token"$$'\n' && \
	  cat <<< "$${text%$$'\n'}"
