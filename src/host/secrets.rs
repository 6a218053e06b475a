//! The Wasm VM's environment, where the policy's secrets come from: Envoy hands the VM the
//! variables listed in `vm_config.environment_variables.host_env_keys` (Istio: `vmConfig.env`
//! with `valueFrom: HOST`), which a wasm32-wasip1 module reads with `std::env::var`. Read once
//! per configuration and handed to the core as values; the core never reads the environment.

use crate::policy::audit;
use crate::policy::config::Config;
use crate::policy::config_error::ConfigError;

/// A variable of the VM's environment; one whose value is not UTF-8 comes back as a value
/// the core refuses as not printable ASCII (it never reaches a header).
fn variable(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => Some("\u{fffd}".into()),
    }
}

/// Loads the value of every variable the policy names into `config`.
pub fn load(mut config: Config) -> Result<Config, ConfigError> {
    config.upstreams.load(&mut variable)?;
    if let Some(key) = &mut config.audit_key {
        key.load(&mut variable)?;
        if let Some(value) = key.value() {
            log::info!(
                "tenant-guard: audit chain keyed with {} (key fingerprint {})",
                key.env(),
                audit::key_fingerprint(value)
            );
        }
    }
    let fingerprints = config.upstreams.fingerprints();
    if !fingerprints.is_empty() {
        log::info!(
            "tenant-guard: upstream credentials loaded: {}",
            fingerprints.join(", ")
        );
    }
    Ok(config)
}
