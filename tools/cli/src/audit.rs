//! `tenant-guard audit`: tenant-guard's audit trail, for auditors: the records the filter
//! writes (one JSON object per log line, chained by SHA-256 per worker VM), read in a stream
//! with flat memory.
//!
//! - [`verify`]: every chain intact, or the first broken link with its line number;
//! - [`query`]: the records matching filters, as JSON lines (as logged, or as OCSF events);
//! - [`summary`]: cross-tenant attempts per tenant and source, denials per reason, per hour.

pub mod command;
pub mod generate;
pub mod lines;
pub mod ocsf;
pub mod query;
pub mod record;
pub mod summary;
pub mod time;
pub mod verify;
