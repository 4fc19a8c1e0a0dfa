# The CDK stack's targets; included by the root Makefile (which provides NODE_STAMP, VENV_STAMP and PATH).

# The stage synth-dev, synth-bundled and cdk-diff work on: `make synth-dev STAGE=prod`.
STAGE ?= dev
# Per-stage synths of the test run (cdk-nag, cfn-lint) and the bundled synth; cdk.out stays the local gateway's.
CDK_TEST_OUT := test-output/cdk
CDK_BUNDLED_OUT := $(CDK_TEST_OUT)/bundled
# Every stage of cdk.json, read when a recipe needs it (not at every make invocation).
CDK_STAGES = $$(node -p "Object.keys(require('./cdk.json').context.stages).join(' ')")
LAMBDA_RUST_TARGET := aarch64-unknown-linux-gnu

.PHONY: synth-dev synth-bundled cdk-test cdk-typecheck cdk-jest cdk-stages workflows-lint cdk-diff cdk-deploy cdk-destroy cdk-clean

synth-dev: $(NODE_STAMP) ## synthesize stage STAGE (default dev) without building handlers into cdk.out/
	SKIP_BUNDLING=1 cdk synth -c stage=$(STAGE) --quiet --output cdk.out
	@test -f cdk.out/Realtime-$(STAGE).template.json && echo "synth-dev: cdk.out/Realtime-$(STAGE).template.json"

cdk-test: cdk-typecheck cdk-jest cdk-stages workflows-lint ## type-check, Jest, cdk-nag + cfn-lint on every stage, workflow lint

cdk-typecheck: $(NODE_STAMP)
	tsc --noEmit -p tsconfig.json

cdk-jest: $(NODE_STAMP)
	jest --ci

# cdk-nag runs inside every synth (a finding fails it); cfn-lint fails on errors, shows warnings.
cdk-stages: $(NODE_STAMP) $(VENV_STAMP)
	@for stage in $(CDK_STAGES); do \
	  echo "cdk-stages: synth + cdk-nag: $$stage"; \
	  SKIP_BUNDLING=1 cdk synth -c stage=$$stage --quiet --output $(CDK_TEST_OUT)/$$stage || exit 1; \
	  echo "cdk-stages: cfn-lint: $$stage"; \
	  cfn-lint --non-zero-exit-code error -- $(CDK_TEST_OUT)/$$stage/Realtime-$$stage.template.json || exit 1; \
	done

# zizmor exits 10 + the highest severity found (11 informational, 12 low, 13 medium, 14 high).
workflows-lint: $(VENV_STAMP)
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	@rc=0; zizmor --offline .github/workflows || rc=$$?; \
	  if [ $$rc -ne 0 ] && [ $$rc -lt 11 -o $$rc -gt 12 ]; then echo "workflows-lint: zizmor finding above low (exit $$rc)"; exit 1; fi

# The handlers: the binaries of the packages under lambdas/ that are named as their package
# (HandlerFunction's `binary`, built by cargo-lambda-cdk as `--bin NAME`).
LAMBDA_BINARIES = $$(cargo metadata --no-deps --format-version 1 --locked | node -e " \
  const { packages } = JSON.parse(require('fs').readFileSync(0, 'utf8')); \
  console.log(packages.filter((p) => /\/lambdas\/[^/]+\/Cargo.toml$$/.test(p.manifest_path)) \
    .filter((p) => p.targets.some((t) => t.kind.includes('bin') && t.name === p.name)).map((p) => p.name).join(' '))")

# The stage's architecture is arm64; when the aarch64 Rust target cannot be installed, build x86_64 and say so.
# cargo-lambda-cdk builds each function alone (`cargo lambda build --release --arm64 --bin NAME
# --locked`), one after the other: each handler's fat-LTO link runs on one core, the other
# idle. One `cargo lambda build` of every handler first (same command, flags, target dir and
# environment: `--bin` in this workspace resolves features over the whole workspace, so a build
# of several handlers makes exactly the crates a build of one makes) runs those links two at a
# time; cdk's own build of each function, the one `cdk deploy` runs, then finds it fresh and
# only copies it. The synth's log says whether cdk's builds compiled anything all the same.
synth-bundled: $(NODE_STAMP) $(VENV_STAMP) ## synthesize STAGE with the handlers built by cargo lambda (fails if one does not build)
	@arch=""; \
	if ! rustup target list --installed | grep -qx '$(LAMBDA_RUST_TARGET)'; then \
	  rustup target add $(LAMBDA_RUST_TARGET) >/dev/null 2>&1 || true; \
	fi; \
	if ! rustup target list --installed | grep -qx '$(LAMBDA_RUST_TARGET)'; then \
	  echo "synth-bundled: WARNING: Rust target $(LAMBDA_RUST_TARGET) cannot be installed here: building x86_64 instead of arm64 (-c architecture=x86_64)."; \
	  arch="-c architecture=x86_64"; \
	fi; \
	rm -rf $(CDK_BUNDLED_OUT) $(CDK_TEST_OUT)/bundled.log; \
	mkdir -p $(CDK_TEST_OUT); \
	start=$$(date +%s); \
	binaries="$(LAMBDA_BINARIES)"; \
	[ -n "$$binaries" ] || { echo "synth-bundled: no handler package found under lambdas/"; exit 1; }; \
	echo "synth-bundled: cargo lambda build of $$binaries"; \
	env -u SKIP_BUNDLING cargo lambda build --release $$([ -z "$$arch" ] && echo --arm64 || echo --x86-64) --locked \
	  $$(printf -- '--bin %s ' $$binaries); \
	prebuilt=$$(date +%s); \
	env -u SKIP_BUNDLING cdk synth -c stage=$(STAGE) $$arch --quiet --output $(CDK_BUNDLED_OUT) 2>&1 | tee $(CDK_TEST_OUT)/bundled.log; \
	compiled=$$(grep -c '^ *Compiling ' $(CDK_TEST_OUT)/bundled.log || true); \
	if [ "$$compiled" -gt 0 ]; then \
	  echo "synth-bundled: WARNING: cdk's own cargo lambda builds compiled $$compiled crates the build of $$binaries had not (see $(CDK_TEST_OUT)/bundled.log): a function's binary is missing from that list, its build differs, or a source changed meanwhile"; \
	fi; \
	built=$$( (ls $(CDK_BUNDLED_OUT)/asset.*/bootstrap 2>/dev/null || true) | wc -l); \
	expected=$$(node -e "const t = require('./$(CDK_BUNDLED_OUT)/Realtime-$(STAGE).template.json'); console.log(Object.values(t.Resources).filter((r) => r.Metadata && r.Metadata['local:binary']).length)"); \
	if [ "$$expected" -lt 1 ] || [ "$$built" -lt "$$expected" ]; then echo "synth-bundled: expected $$expected handler bootstraps (one per local:binary function), found $$built"; exit 1; fi; \
	want=b7; [ -z "$$arch" ] || want=3e; \
	for bootstrap in $(CDK_BUNDLED_OUT)/asset.*/bootstrap; do \
	  machine=$$(od -An -tx1 -j18 -N1 "$$bootstrap" | tr -d ' '); \
	  if [ "$$machine" != "$$want" ]; then echo "synth-bundled: $$bootstrap: ELF machine $$machine, expected $$want"; exit 1; fi; \
	done; \
	commit=$$(git rev-parse --short=12 HEAD); \
	[ -z "$$(git status --porcelain --untracked-files=no -- . ':!bench/RESULTS.md' ':!bench/results.json')" ] || commit="$$commit-dirty"; \
	echo "$$commit" > $(CDK_BUNDLED_OUT)/commit; \
	echo "synth-bundled: stage $(STAGE): $$built handlers built ($$([ "$$want" = b7 ] && echo arm64 || echo x86_64)) in $$(( prebuilt - start )) s and synthesized in $$(( $$(date +%s) - prebuilt )) s"

cdk-diff: $(NODE_STAMP) $(VENV_STAMP) ## compare STAGE with what is deployed (needs AWS credentials)
	@rustup target list --installed | grep -qx '$(LAMBDA_RUST_TARGET)' || rustup target add $(LAMBDA_RUST_TARGET)
	env -u SKIP_BUNDLING cdk diff -c stage=$(STAGE) --method template

cdk-clean: ## remove synthesized templates (cdk.out, test-output/cdk)
	rm -rf cdk.out $(CDK_TEST_OUT)

# Deploying builds the handlers (cargo lambda from the venv on PATH): never with SKIP_BUNDLING.
cdk-deploy: $(NODE_STAMP) $(VENV_STAMP) ## deploy STAGE (default dev) with the current AWS credentials
	@rustup target list --installed | grep -qx '$(LAMBDA_RUST_TARGET)' || rustup target add $(LAMBDA_RUST_TARGET)
	env -u SKIP_BUNDLING cdk deploy -c stage=$(STAGE)

cdk-destroy: $(NODE_STAMP) ## delete STAGE's stack (tables and logs of a retain stage stay)
	SKIP_BUNDLING=1 cdk destroy -c stage=$(STAGE)
