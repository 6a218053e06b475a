/work/main/bench/floor/target/wasm32-wasip1/release/deps/bench_floor-c9d2e01e3a504257.d: src/lib.rs Cargo.toml

/work/main/bench/floor/target/wasm32-wasip1/release/deps/libbench_floor-c9d2e01e3a504257.rmeta: src/lib.rs Cargo.toml

src/lib.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
