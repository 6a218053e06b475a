//! Functional core: every policy decision of the filter, as plain Rust.
//!
//! Nothing in here imports `proxy_wasm`, reads a clock or does I/O: callers pass `now` and
//! the request's facts in, and get decisions back as data. That keeps the rules testable
//! natively and on wasm32 in microseconds, and keeps the host shell (`crate::host`) boring.

pub mod alerts;
pub mod api_key;
pub mod audit;
pub mod config;
pub mod config_error;
pub mod cost;
pub mod decision;
pub mod denial;
pub mod digest;
pub mod global_rate_limit;
pub mod header_map;
pub mod identity;
pub mod isolation;
pub mod json;
pub mod json_edit;
pub mod jwks;
pub mod lease;
pub mod metering;
pub mod models;
pub mod namespace;
pub mod object_map;
pub mod output_cap;
pub mod plan;
pub mod protobuf;
pub mod provider_api;
pub mod quota;
pub mod ratelimit;
pub mod record;
pub mod rfc3339;
pub mod secret;
pub mod sorted;
pub mod state_fields;
pub mod stream;
pub mod structpb;
pub mod tenant;
pub mod token_cache;
pub mod upstream;
pub mod usage;
pub mod user_quota;
pub mod vector_store;
pub mod word;
