//! Imperative shell: the only code that talks to Envoy. It reads what the core needs from the
//! host, calls into `crate::policy`, and executes the returned decisions. No policy lives here.
//!
//! A request's life through the callbacks:
//! 1. `on_http_request_headers`: read token, path and tenant header → `policy::decision::decide`
//!    → either apply header edits and continue, or send the denial as a local reply. The record's
//!    filter state is written here, so access logs see it even for local replies.
//! 2. `on_log`: add the response status and write the record's JSON line to the Envoy log.
//!
//! Per worker, the root context owns the compiled config, the remote key sets it refreshes
//! from `on_tick`, and the token cache; HTTP contexts share them through an `Rc<RefCell<_>>`
//! (each worker runs its VM on one thread).

pub mod filter;
pub mod root;
pub mod shared;
pub mod stats;

/// Seconds since the Unix epoch, from the host's clock (not the WASI clock).
fn now() -> Option<u64> {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}
