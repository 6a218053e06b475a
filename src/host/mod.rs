//! Imperative shell: the only code that talks to Envoy. It reads what the core needs from the
//! host, calls into `crate::policy`, and executes the returned decisions. No policy lives here.
//!
//! A request's life through the callbacks:
//! 1. `on_http_request_headers`: token, path, tenant header → `policy::decision::decide` →
//!    a denial (local reply) or an admission: header edits (tenant, claims, namespace path and
//!    authority), then the quota admission (one CAS over the tenant's counters). The record's
//!    filter state is written here, so access logs see it for local replies too. The headers
//!    go on at once, except while the rate-limit service (`global_rate_limit`) is asked: Envoy
//!    hands a Wasm filter the body only after its headers continued. With a lease, asks are
//!    answered from credit in shared data without waiting (`filter/leased.rs`, `lease.rs`).
//! 2. `on_http_request_body`: held until complete; vector-store bodies are confined,
//!    `include_usage` added to OpenAI streams, the estimate reserved (`policy::metering`), and
//!    a per-model token check sent to the rate-limit service.
//! 3. `on_http_response_headers` / `_body`: remaining-quota headers, then every chunk is read
//!    for usage as it passes (vector-store collection listings are held and filtered); at the
//!    end of the body the reservation is settled, the usage written to filter state, and with
//!    `global_rate_limit` a token debit left with the root context, woken at once through the
//!    worker's shared queue (`Worker::wake_root`).
//! 4. `on_log`: settles aborted streams, counts the per-tenant stats and writes the record's
//!    JSON line to the Envoy log.
//!
//! Per worker, `worker.rs` holds what the root context and the streams share: the compiled
//! config (with the remote key sets the root refreshes from `on_tick`), the token cache, the
//! stores in shared data, per-tenant stats, and the token debits and lease refills streams
//! leave for the root to send. Both borrow it through an `Rc<RefCell<_>>` (each worker runs its
//! VM on one thread); the root (`root.rs`) and the streams (`filter.rs`) never import each
//! other.

pub mod abi;
pub mod alerts;
pub mod filter;
pub mod global;
pub mod lease;
pub mod root;
mod secrets;
pub mod shared;
pub mod stats;
pub mod user_store;
pub mod worker;

/// The root context of a worker; the context of each of its HTTP streams is a
/// [`filter::Filter`]. Neither knows the other: both share the worker's state (`worker.rs`).
pub fn root_context(id: u32) -> Box<dyn proxy_wasm::traits::RootContext> {
    Box::new(root::Root::new(id, |worker, context_id| {
        Box::new(filter::Filter::new(worker, context_id))
    }))
}

/// Bytes Envoy has received for the current request so far, headers included.
fn request_total_size() -> u64 {
    abi::integer_property(&["request", "total_size"]).unwrap_or(0)
}

/// Milliseconds since the Unix epoch, from the host's clock.
pub(crate) fn now_ms() -> Option<u64> {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
}

/// Seconds since the Unix epoch, from the host's clock (not the WASI clock).
fn now() -> Option<u64> {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}
