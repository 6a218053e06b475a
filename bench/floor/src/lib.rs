//! The floor of `make bench`: a minimal proxy-wasm HTTP filter that does what every
//! identity filter must at least do per request: read two request headers, set one filter-state
//! value and one request header. What Envoy and V8 cost for such a filter is the least any Wasm
//! filter can cost; tenant-guard is measured against it.
//!
//! `make bench-attribution` also runs it with a configuration naming how it reads the request's
//! headers: `reads=one-by-one` reads, one hostcall each, the six headers tenant-guard reads on a
//! GET; `reads=pairs` gets them all in one `get_header_map_pairs` and looks them up in it.
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
    proxy_wasm::set_root_context(|_| Box::new(FloorRoot { reads: Reads::Two }));
}}

/// The headers tenant-guard reads from a GET's request, in its order.
const SIX: [&str; 6] = [
    ":path",
    ":method",
    "x-tenant-id",
    "authorization",
    "x-request-id",
    "content-type",
];

/// How the filter reads the request's headers (its configuration).
#[derive(Clone, Copy)]
enum Reads {
    /// `:path` and `authorization`, one hostcall each (no configuration: the floor).
    Two,
    /// [`SIX`], one hostcall each (`reads=one-by-one`).
    OneByOne,
    /// [`SIX`] looked up in one `get_header_map_pairs` (`reads=pairs`).
    Pairs,
}

struct FloorRoot {
    reads: Reads,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let config =
            hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default();
        self.reads = match config.as_slice() {
            b"reads=one-by-one" => Reads::OneByOne,
            b"reads=pairs" => Reads::Pairs,
            _ => Reads::Two,
        };
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor { reads: self.reads }))
    }
}

struct Floor {
    reads: Reads,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let header = |name| {
            hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let (path, authorization) = match self.reads {
            Reads::Two => (header(":path"), header("authorization")),
            Reads::OneByOne => {
                let [path, _, _, authorization, _, _] = SIX.map(header);
                (path, authorization)
            }
            Reads::Pairs => {
                let pairs =
                    hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
                let find = |name: &str| {
                    pairs
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let [path, _, _, authorization, _, _] = SIX.map(find);
                (path, authorization)
            }
        };
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
