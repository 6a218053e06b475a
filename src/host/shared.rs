//! Compare-and-swap updates of one shared-data key, visible to every worker of the process
//! (shared data is scoped by the VM id).

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// How often an update is retried when another worker wrote in between.
const ATTEMPTS: usize = 64;

/// Why an update did not happen.
pub enum UpdateError<E> {
    /// `change` refused: nothing was written.
    Refused(E),
    /// The host failed, or the key stayed contended for every attempt.
    Unavailable(String),
}

/// The shared-data key of one tenant's quota counters: one key per tenant, reused forever.
pub fn quota_key(tenant: &str) -> String {
    format!("tenant-guard/quota/{tenant}")
}

/// Creates the key with an empty value if it does not exist yet.
///
/// Shared data has no atomic create: a write to a missing key succeeds whatever the cas, so
/// two workers creating the same key at once could each believe their first update landed.
/// Creating keys for the configured tenants in `on_configure`, before traffic, keeps that race
/// away from them; tenants admitted by `default_tenant` create theirs on first use, where a
/// simultaneous first request on two workers can lose one count once.
pub fn ensure(key: &str) {
    if let Ok((_, None)) = hostcalls::get_shared_data(key) {
        let _ = hostcalls::set_shared_data(key, Some(&[]), None);
    }
}

/// Reads the value, applies `change`, and writes the result back only if nobody wrote in
/// between; otherwise starts over with the fresh value.
pub fn update<T, E>(
    key: &str,
    mut change: impl FnMut(&[u8]) -> Result<(Vec<u8>, T), E>,
) -> Result<T, UpdateError<E>> {
    for _ in 0..ATTEMPTS {
        let (value, cas) = match hostcalls::get_shared_data(key) {
            // An existing key always has a cas; an empty value may come back as `None`.
            Ok((value, Some(cas))) => (value.unwrap_or_default(), cas),
            Ok((_, None)) => {
                ensure(key);
                continue;
            }
            Err(status) => return Err(UpdateError::Unavailable(format!("{status:?}"))),
        };
        let (next, out) = change(&value).map_err(UpdateError::Refused)?;
        match hostcalls::set_shared_data(key, Some(&next), Some(cas)) {
            Ok(()) => return Ok(out),
            Err(Status::CasMismatch) => continue,
            Err(status) => return Err(UpdateError::Unavailable(format!("{status:?}"))),
        }
    }
    Err(UpdateError::Unavailable(format!(
        "{ATTEMPTS} attempts lost the race"
    )))
}
