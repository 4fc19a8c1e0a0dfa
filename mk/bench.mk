# The benchmarks; included by the root Makefile (which provides NODE_STAMP, JAVA_STAMP, PATH;
# synth-dev comes from mk/cdk.mk, the local token key JWT_SECRET_FILE from mk/gateway.mk, which
# the gateway needs when the stack has a $connect authorizer). `make bench` writes
# bench/results.json and bench/RESULTS.md.
#
#   make bench                      the full run: about 9 minutes of benchmarks (the room of 15,000
#                                   and the connect storm take 5 of them), after the release builds
#                                   of seven binaries (about 6 min from a fresh clone on 2 cores,
#                                   1 to 4 min when only workspace crates changed)
#   make bench BENCH_FLAGS=--quick  small sizes, to try the harness out (marked QUICK in the results)
#   bench run --only fan-out ...    one phase; see `target/release/bench run --help`

BENCH_FLAGS ?=
# The Python baseline's own venv (awslambdaric + boto3, pinned), apart from the tools' .venv.
BENCH_VENV := bench/.venv
BENCH_VENV_STAMP := $(BENCH_VENV)/.installed
BENCH_RELEASE_DIR := $(or $(CARGO_TARGET_DIR),target)/release
# Release builds of everything the benchmarks run: the handlers, the gateway, the harness.
BENCH_PACKAGES := -p connect -p disconnect -p message -p authorizer -p fanout -p local-gateway -p bench

.PHONY: bench bench-build

# Byte-compiled up front, as the Lambda Python runtime ships boto3: the cold start then
# measures importing it, not compiling it.
$(BENCH_VENV_STAMP): bench/baselines/python/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/baselines/python/requirements.txt
	$(BENCH_VENV)/bin/python -m compileall -q $(BENCH_VENV)/lib bench/baselines/python >/dev/null
	touch $@

bench-build: ## build the handlers, the gateway and the harness in release (what `make bench` measures)
	cargo build --release --locked --bins $(BENCH_PACKAGES)

bench: $(NODE_STAMP) $(JAVA_STAMP) $(BENCH_VENV_STAMP) ## run every benchmark: bench/RESULTS.md and bench/results.json
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory bench-build; \
	built=$$(( $$(date +%s) - start )); \
	echo "bench: release builds done in $$built s"; \
	$(MAKE) --no-print-directory synth-dev STAGE=dev; \
	$(if $(JWT_SECRET_FILE),$(MAKE) --no-print-directory $(JWT_SECRET_FILE);) \
	$(BENCH_RELEASE_DIR)/bench run --repo . --out bench --bin-dir $(BENCH_RELEASE_DIR) \
	  --template cdk.out/Realtime-dev.template.json --stage dev --python $(BENCH_VENV)/bin/python \
	  --make-started $$start --build-seconds $$built $(BENCH_FLAGS); \
	echo "make bench: done in $$(( $$(date +%s) - start )) s: bench/RESULTS.md"
