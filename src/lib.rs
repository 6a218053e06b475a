//! tenant-guard: an Envoy proxy-wasm filter that makes one GenAI gateway safe for many tenants.
//!
//! `policy` is the functional core (plain Rust, no host calls); `host` is the thin shell that
//! talks to Envoy through proxy-wasm and executes the core's decisions.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod policy;

#[cfg(not(test))]
mod host;

#[cfg(not(test))]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(host::root_context);
}}
