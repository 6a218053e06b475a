//! The floor of `make bench`: a minimal proxy-wasm HTTP filter that does what every
//! identity filter must at least do per request: read two request headers, set one filter-state
//! value and one request header. What Envoy and V8 cost for such a filter is the least any Wasm
//! filter can cost; tenant-guard is measured against it.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(FloorRoot));
}}

struct FloorRoot;

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }
}

struct Floor;

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let header = |name| {
            hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let path = header(":path");
        let authorization = header("authorization");
        // Something derived from both, so neither read can be optimised away.
        let tenant = if authorization.len() > path.len() {
            "acme"
        } else {
            "none"
        };
        let _ = hostcalls::set_property(vec!["tenant"], Some(tenant.as_bytes()));
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-tenant-id", Some(tenant));
        Action::Continue
    }
}
