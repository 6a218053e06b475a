//! `tenant-guard`, the operators' and auditors' command: one module per subcommand.
//!
//! - [`check`]: compile a policy (a file, an Envoy bootstrap or listener file, a Kubernetes
//!   manifest) with the filter's own code, summarise it and warn about risky choices;
//! - [`audit`]: verify, query and summarise the filter's hash-chained audit stream;
//! - [`api_key`]: a new tenant API key, and the policy entry that holds its digest;
//! - [`bill`]: the month's bill per tenant, user and model from the request records.

pub mod api_key;
pub mod audit;
pub mod bill;
pub mod check;
