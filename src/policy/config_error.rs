//! The error of a policy document: the field path at fault and why. A leaf: the code that
//! compiles each section (in `config` and in the domain modules that own the section) returns
//! it, and it imports nothing of the domain.

use std::fmt;

/// A configuration error: the field path at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl ConfigError {
    /// The line the filter logs when Envoy hands it this configuration (and that
    /// `tenant-guard check` prints): operators search their logs for it.
    pub fn log_line(&self) -> String {
        format!("tenant-guard: invalid configuration: {self}")
    }
}

pub(crate) fn err<T>(
    path: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        message: message.into(),
    })
}

/// A header name the filter may set: lower-case RFC 7230 token characters, no pseudo-header.
pub(crate) fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(lower)
    } else {
        err(path, format!("\"{name}\" is not a valid header name"))
    }
}
