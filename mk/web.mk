# The browser client (web/) and its test in a real browser; included by the root Makefile
# (which provides NODE_STAMP, JAVA_STAMP and PATH); gateway-bins and GATEWAY_BIN_DIR come from mk/gateway.mk.

CHROMIUM := /usr/bin/chromium
WEB_TEST_OUT := test-output/web

.PHONY: web-lint web-test

# Debian's browser (never one downloaded by Playwright), with fonts for readable screenshots.
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null
	@test -x $@ && $@ --version 2>/dev/null

# Server text reaches the page as text only: no HTML sinks in the client.
web-lint: ## check the web client's and its test's JavaScript
	node --check web/app.js
	node --check web/tests/chat.test.mjs
	@! grep -nE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function' web/app.js \
	  || { echo "web-lint: web/app.js must build the page with textContent and elements only"; exit 1; }

# The real gateway and handlers (mk/gateway.mk builds them) on the dev template, DynamoDB Local on Java.
web-test: web-lint $(NODE_STAMP) $(JAVA_STAMP) $(CHROMIUM) gateway-bins $(JWT_SECRET_FILE) ## the web client in Chromium against the local gateway
	$(MAKE) --no-print-directory synth-dev STAGE=dev
	WEB_TEST_OUT=$(WEB_TEST_OUT) WEB_TEST_GATEWAY=$(GATEWAY_BIN_DIR)/local-gateway \
	  WEB_TEST_TEMPLATE=cdk.out/Realtime-dev.template.json timeout 180 node web/tests/chat.test.mjs
