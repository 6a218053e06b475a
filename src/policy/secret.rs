//! Secret values taken from the Wasm VM's environment (upstream credentials, the audit chain's
//! key). The shell reads the environment at configure time and hands the values in; the core
//! never reads the environment itself.
//!
//! A [`Secret`] never prints its value: `Debug` and `Display` write `<redacted>`, there is no
//! `Serialize`, and the value is only reached through [`Secret::expose`], at the one place it
//! goes out (a header towards the upstream, an HMAC key).

use std::fmt;
use std::rc::Rc;

use crate::policy::config_error::{err, ConfigError};
use crate::policy::digest::sha256_prefix;

/// A secret value (shared, so a header edit can carry it without copying it).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Rc<str>);

impl Secret {
    pub fn new(value: &str) -> Secret {
        Secret(Rc::from(value))
    }

    /// The value itself: for the header or key it is, never for text a person reads.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 8 hex digits of the value's SHA-256: names the value in records without
    /// revealing it (32 bits of a hash say nothing usable about a high-entropy key).
    pub fn fingerprint(&self) -> String {
        short_digest(self.0.as_bytes())
    }
}

/// The first 8 hex digits of the SHA-256 of `bytes`.
pub fn short_digest(bytes: &[u8]) -> String {
    sha256_prefix(bytes, 8)
}

/// The error for a variable the VM's environment lacks: names the variable and where Envoy
/// (and Istio) hand one over.
pub fn not_set(path: &str, env: &str) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        message: format!(
            "environment variable {env} is not set in the Wasm VM (list it in \
             vm_config.environment_variables.host_env_keys; Istio: vmConfig.env with valueFrom: \
             HOST)"
        ),
    }
}

/// A secret the policy names by its environment variable alone (`audit.key_env`), and its
/// value once the shell loaded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Where the policy names it: `audit.key_env`.
    path: &'static str,
    env: String,
    /// At least this many bytes.
    min_len: usize,
    value: Option<Secret>,
}

impl Named {
    /// `env`, named at `path`, for a value of at least `min_len` bytes.
    pub fn new(path: &'static str, env: String, min_len: usize) -> Result<Named, ConfigError> {
        if !is_env_name(&env) {
            return err(
                path,
                "must be an environment variable name: A-Z a-z 0-9 _, not starting with a digit",
            );
        }
        Ok(Named {
            path,
            env,
            min_len,
            value: None,
        })
    }

    /// Takes the value from `lookup` (the VM's environment, read by the shell); the error
    /// names the variable, never a value.
    pub fn load(
        &mut self,
        lookup: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let Some(value) = lookup(&self.env) else {
            return Err(not_set(self.path, &self.env));
        };
        if let Some(why) = unusable(&value) {
            return err(
                self.path,
                format!("environment variable {} {why}", self.env),
            );
        }
        if value.len() < self.min_len {
            return err(
                self.path,
                format!(
                    "environment variable {} must hold at least {} characters of secret",
                    self.env, self.min_len
                ),
            );
        }
        self.value = Some(Secret::new(&value));
        Ok(())
    }

    /// The value, once loaded.
    pub fn value(&self) -> Option<&Secret> {
        self.value.as_ref()
    }

    pub fn env(&self) -> &str {
        &self.env
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why an environment variable's value cannot be used; the text never holds the value.
pub fn unusable(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return Some("is empty");
    }
    if value.bytes().any(|b| b == b'\n' || b == b'\r') {
        return Some(
            "contains a line break (a Kubernetes Secret written with a trailing newline?)",
        );
    }
    if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Some("holds characters other than printable ASCII");
    }
    None
}

/// Whether `name` is a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = Secret::new("sk-live-0123456789");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(
            format!("{:?}", Some(vec![secret.clone()])),
            "Some([Secret(<redacted>)])"
        );
        assert_eq!(secret.expose(), "sk-live-0123456789");
    }

    #[test]
    fn fingerprints_are_the_first_eight_hex_digits_of_the_sha256() {
        // printf %s abc | sha256sum: ba7816bf8f01cfea...
        assert_eq!(Secret::new("abc").fingerprint(), "ba7816bf");
        assert_eq!(short_digest(b"abc"), "ba7816bf");
    }

    #[test]
    fn unusable_values_are_named_without_the_value() {
        assert_eq!(unusable("sk-1"), None);
        assert_eq!(unusable("Bearer a b"), None);
        assert_eq!(unusable(""), Some("is empty"));
        assert!(unusable("sk-1\n").unwrap().contains("line break"));
        assert!(unusable("sk-\u{7f}").is_some());
        assert!(unusable("sk-é").is_some());
        for message in [unusable("sk-1\n"), unusable("sk-é")] {
            assert!(!message.unwrap().contains("sk-"));
        }
    }

    #[test]
    fn a_named_secret_is_loaded_from_the_environment_or_refused_by_name() {
        let mut named = Named::new("audit.key_env", "AUDIT_KEY".into(), 32).unwrap();
        assert_eq!(named.value(), None);
        let e = named.load(&mut |_| None).unwrap_err();
        assert_eq!(e.path, "audit.key_env");
        assert!(e
            .message
            .starts_with("environment variable AUDIT_KEY is not set in the Wasm VM"));
        let short = "k".repeat(31);
        let e = named.load(&mut |_| Some(short.clone())).unwrap_err();
        assert!(e.message.contains("at least 32 characters") && !e.message.contains(&short));
        let key = "k".repeat(32);
        named
            .load(&mut |name| (name == "AUDIT_KEY").then(|| key.clone()))
            .unwrap();
        assert_eq!(named.value().map(Secret::expose), Some(key.as_str()));
        assert!(!format!("{named:?}").contains(&key));
        assert!(Named::new("audit.key_env", "1X".into(), 32).is_err());
    }

    #[test]
    fn environment_variable_names_are_portable_ones() {
        for ok in ["ACME_OPENAI_KEY", "_x", "a1"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }
}
