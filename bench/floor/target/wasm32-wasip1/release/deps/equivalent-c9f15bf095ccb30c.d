/work/main/bench/floor/target/wasm32-wasip1/release/deps/equivalent-c9f15bf095ccb30c.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/equivalent-1.0.3/src/lib.rs

/work/main/bench/floor/target/wasm32-wasip1/release/deps/libequivalent-c9f15bf095ccb30c.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/equivalent-1.0.3/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/equivalent-1.0.3/src/lib.rs:
