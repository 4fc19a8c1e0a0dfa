# The conformance suite (local/gateway/tests/conformance); included by the root Makefile, with
# gateway-e2e-deps from mk/gateway.mk.
#
#   make e2e                             the suite against the local gateway it starts (part
#                                        of `make test`, through the workspace's nextest run)
#   make e2e URL=wss://… TOKEN=…         the same suite against a deployed stage, or against a
#                                        running local gateway (URL=ws://127.0.0.1:3001/dev)
#
# @connections cases sign with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
# from the environment, and are skipped when there are none; E2E_REGION names the region when
# the URL's host does not, E2E_CONNECTIONS_URL the @connections endpoint behind a custom domain,
# E2E_CASES=word,word runs only the cases whose names contain one of them.
URL ?=
TOKEN ?=
E2E_RUN := cargo nextest run --locked -p local-gateway --test conformance --no-capture

.PHONY: e2e
# Against a URL nothing local is needed: no handlers, template or DynamoDB Local.
e2e: $(if $(strip $(URL)),,gateway-e2e-deps) ## the conformance suite: against the local gateway, or URL=wss://… TOKEN=… (a deployed stage)
ifeq ($(strip $(URL)),)
	env -u E2E_URL -u E2E_TOKEN $(E2E_RUN)
else
	@test -n '$(strip $(TOKEN))' || { echo "make e2e URL=$(URL) needs TOKEN=… (a token the stage's authorizer accepts; see the README)" >&2; exit 2; }
	@echo "E2E_URL='$(strip $(URL))' E2E_TOKEN=… $(E2E_RUN)"
	@E2E_URL='$(strip $(URL))' E2E_TOKEN='$(strip $(TOKEN))' $(E2E_RUN)
endif

# `make test` runs the suite through the workspace's nextest run, always against the local
# gateway: an E2E_URL left in the environment must not send it elsewhere.
rust-test: export E2E_URL :=
rust-test: export E2E_TOKEN :=
