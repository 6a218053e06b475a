//! `tenant-guard-ratelimit`: a development/test implementation of Envoy's global rate-limit
//! service (gRPC `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`) built on
//! Kuadrant's `limitador` engine, answering like limitador-server does. See README.md.

// tonic::Status is a large error type; that is how gRPC handlers are written.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod limits;
pub mod proto;
pub mod service;
pub mod storage;
