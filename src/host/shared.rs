//! Tenants' quota counters in shared data, visible to every worker of the process (shared data
//! is scoped by the VM id), updated by compare-and-swap.
//!
//! Shared data has no atomic create (a write to a missing key succeeds whatever the cas) and
//! never frees a key, so every key is created before traffic and the key space is bounded:
//! - a listed tenant has its own key, `tenant-guard/quota/<tenant>`, created at load time;
//! - tenants admitted through `default_tenant` share a fixed set of slot keys
//!   (`tenant-guard/default/<n>`, created at load time): a tenant's first request claims the
//!   first free slot from the hash of its id on (by compare-and-swap on the existing slot, so
//!   two workers cannot both claim one), and its counters live there from then on. When every
//!   slot is taken, new default tenants are refused.
//!
//! With `global_rate_limit.lease`, each tenant's leased credit (`policy::lease`) lives beside
//! its counters under keys of the same shape: `tenant-guard/lease/<tenant>` and
//! `tenant-guard/default-lease/<n>` for the tenant that holds slot `n`.

use std::collections::HashMap;

use crate::host::abi::{self, Write};
use crate::policy::isolation::objects::{self, Inserted, OwnerDigest, Owners};

/// How often an update is retried when another worker wrote in between.
const ATTEMPTS: usize = 64;

/// Why an update did not happen.
pub enum UpdateError<E> {
    /// `change` refused: nothing was written.
    Refused(E),
    /// The host failed, the key stayed contended for every attempt, or no slot was free.
    Unavailable(String),
}

/// Whose counters an update is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaKey {
    Listed(String),
    /// A tenant admitted through `default_tenant`.
    Default(String),
}

/// The shared-data key of one listed tenant's quota counters.
fn listed_key(tenant: &str) -> String {
    format!("tenant-guard/quota/{tenant}")
}

fn slot_key(slot: usize) -> String {
    format!("tenant-guard/default/{slot}")
}

/// The shared-data key of a listed tenant's leased credit.
fn lease_key(tenant: &str) -> String {
    format!("tenant-guard/lease/{tenant}")
}

/// The leased credit of the default tenant holding slot `slot`.
fn slot_lease_key(slot: usize) -> String {
    format!("tenant-guard/default-lease/{slot}")
}

/// Topics already logged by some worker of this process (see [`first_to_say`]).
const SAID_KEY: &str = "tenant-guard/said";

/// True for the first worker of the process to ask about `topic`: for log lines that should
/// appear once per process, not once per worker.
pub fn first_to_say(topic: &str) -> bool {
    update(SAID_KEY, |said| {
        let known = said.split(|b| *b == b'\n').any(|t| t == topic.as_bytes());
        if known {
            Err(())
        } else {
            Ok(([said, topic.as_bytes(), b"\n"].concat(), ()))
        }
    })
    .is_ok()
}

/// Counts the filter's VMs in this process (each worker's, the main thread's) whose remote keys
/// of `provider` are stale: this one joins them (`stale`) or leaves; the count before. So the
/// first to find the keys stale and the last to see them fresh again say so once for the whole
/// process.
pub fn stale_key_holders(provider: &str, stale: bool) -> Option<u64> {
    update(&format!("tenant-guard/jwks-stale/{provider}"), |value| {
        let before: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let after = if stale {
            before.saturating_add(1)
        } else {
            before.saturating_sub(1)
        };
        Ok::<_, ()>((after.to_string().into_bytes(), before))
    })
    .ok()
}

/// This worker's way into the tenants' counters.
pub struct QuotaStore {
    slots: usize,
    /// Default tenants whose slot this worker already found.
    claimed: HashMap<String, usize>,
}

impl QuotaStore {
    /// Creates the keys of the listed tenants and `slots` default-tenant slots, if missing
    /// (with `leases`, their leased-credit keys too).
    pub fn new<'a>(
        listed: impl Iterator<Item = &'a str>,
        slots: usize,
        leases: bool,
    ) -> QuotaStore {
        ensure(SAID_KEY);
        for tenant in listed {
            ensure(&listed_key(tenant));
            if leases {
                ensure(&lease_key(tenant));
            }
        }
        for slot in 0..slots {
            ensure(&slot_key(slot));
            if leases {
                ensure(&slot_lease_key(slot));
            }
        }
        QuotaStore {
            slots,
            claimed: HashMap::new(),
        }
    }

    /// Reads the tenant's counters, applies `change`, and writes the result back only if
    /// nobody wrote in between; otherwise starts over with the fresh value.
    pub(crate) fn update(
        &mut self,
        key: &QuotaKey,
        change: &mut Change<'_>,
    ) -> Result<(), UpdateError<()>> {
        match key {
            QuotaKey::Listed(tenant) => update_erased(&listed_key(tenant), change),
            QuotaKey::Default(tenant) => {
                let slot = slot_key(self.slot(tenant)?);
                update_owned(&slot, tenant, change, "slot ")
            }
        }
    }

    /// Reads the tenant's leased credit, applies `change`, and writes the result back only if
    /// nobody wrote in between; otherwise starts over with the fresh value.
    pub fn update_lease<T, E>(
        &mut self,
        key: &QuotaKey,
        change: impl FnMut(&[u8]) -> Result<(Vec<u8>, T), E>,
    ) -> Result<T, UpdateError<E>> {
        erased(change, |change| {
            let key = match key {
                QuotaKey::Listed(tenant) => lease_key(tenant),
                // Slots are never given up, so the slot's lease key is the tenant's for good.
                QuotaKey::Default(tenant) => slot_lease_key(self.slot(tenant)?),
            };
            update_erased(&key, change)
        })
    }

    /// The slot of a default tenant (claimed now if it has none yet), for keys kept per slot.
    pub fn default_slot<E>(&mut self, tenant: &str) -> Result<usize, UpdateError<E>> {
        self.slot(tenant)
    }

    /// A default tenant's slot: the one it claimed before, or a free one it claims now (linear
    /// probing from the hash of its id).
    fn slot<E>(&mut self, tenant: &str) -> Result<usize, UpdateError<E>> {
        if let Some(slot) = self.claimed.get(tenant) {
            return Ok(*slot);
        }
        let start = usize::try_from(fnv1a(tenant.as_bytes()) % self.slots.max(1) as u64)
            .unwrap_or_default();
        for probe in 0..self.slots {
            let slot = start.wrapping_add(probe) % self.slots;
            if claim(&slot_key(slot), tenant)? {
                self.claimed.insert(tenant.to_string(), slot);
                return Ok(slot);
            }
        }
        Err(UpdateError::Unavailable(format!(
            "all {} default-tenant quota slots are taken (default_tenant.max_tenants)",
            self.slots
        )))
    }
}

/// Claims the slot `key` for `tenant` if it is free; true when the slot is (now) the tenant's.
pub(crate) fn claim<E>(key: &str, tenant: &str) -> Result<bool, UpdateError<E>> {
    for _ in 0..ATTEMPTS {
        let (value, cas) = read(key)?;
        match split_owner(&value).0 {
            Some(owner) => return Ok(owner == tenant.as_bytes()),
            None => match abi::set_shared_data(key, &with_owner(tenant, &[]), Some(cas)) {
                Ok(Write::Done) => return Ok(true),
                Ok(Write::CasMismatch) => continue,
                Err(e) => return Err(UpdateError::Unavailable(format!("{e:?}"))),
            },
        }
    }
    Err(UpdateError::Unavailable(format!(
        "{ATTEMPTS} attempts to claim {key} lost the race"
    )))
}

/// A slot's value: the owner's id (2-byte length, then the id) and the counters after it.
pub(crate) fn with_owner(owner: &str, state: &[u8]) -> Vec<u8> {
    let len = u16::try_from(owner.len()).unwrap_or(u16::MAX);
    let id = owner.as_bytes().get(..usize::from(len)).unwrap_or_default();
    [&len.to_le_bytes()[..], id, state].concat()
}

/// The owner and the counters of a slot's value; no owner when the slot is free.
pub(crate) fn split_owner(value: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some((len, rest)) = value.split_first_chunk::<2>() else {
        return (None, value);
    };
    let len = usize::from(u16::from_le_bytes(*len));
    match rest.split_at_checked(len) {
        Some((owner, state)) if len > 0 => (Some(owner), state),
        _ => (None, &[]),
    }
}

/// FNV-1a: a stable hash, so every worker probes the same slots for a tenant.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Creates the key with an empty value if it does not exist yet (before traffic: there is no
/// atomic create).
pub(crate) fn ensure(key: &str) {
    if let Ok((_, None)) = abi::shared_data(key) {
        let _ = abi::set_shared_data(key, &[], None);
    }
}

/// A key's value and cas; a key missing (it should not be) is created first.
fn read<E>(key: &str) -> Result<(Vec<u8>, u32), UpdateError<E>> {
    for _ in 0..2 {
        match abi::shared_data(key) {
            // An existing key always has a cas; an empty value may come back as `None`.
            Ok((value, Some(cas))) => return Ok((value.unwrap_or_default(), cas)),
            Ok((_, None)) => ensure(key),
            Err(e) => return Err(UpdateError::Unavailable(format!("{e:?}"))),
        }
    }
    Err(UpdateError::Unavailable(format!("{key} cannot be created")))
}

/// A change of a shared-data value as the update loop runs it: the next value, or `None` when
/// the change refused. Every update goes through this one form ([`erased`]), so the retry
/// loop and the stores' key and slot logic are compiled once, not once per kind of change.
pub(crate) type Change<'a> = dyn FnMut(&[u8]) -> Option<Vec<u8>> + 'a;

/// Runs `change` as a [`Change`] through `run` (an update of that form) and gives back what
/// the last run of `change` returned: its result when the value was written, its refusal.
pub(crate) fn erased<T, E>(
    mut change: impl FnMut(&[u8]) -> Result<(Vec<u8>, T), E>,
    run: impl FnOnce(&mut Change<'_>) -> Result<(), UpdateError<()>>,
) -> Result<T, UpdateError<E>> {
    let mut last = None;
    let result = run(&mut |value| match change(value) {
        Ok((next, out)) => {
            last = Some(Ok(out));
            Some(next)
        }
        Err(refusal) => {
            last = Some(Err(refusal));
            None
        }
    });
    match (result, last) {
        (Ok(()), Some(Ok(out))) => Ok(out),
        (Err(UpdateError::Refused(())), Some(Err(refusal))) => Err(UpdateError::Refused(refusal)),
        (Err(UpdateError::Unavailable(why)), _) => Err(UpdateError::Unavailable(why)),
        _ => Err(UpdateError::Unavailable(
            "the update lost the change's outcome".into(),
        )),
    }
}

/// Reads the value, applies `change`, and writes the result back only if nobody wrote in
/// between; otherwise starts over with the fresh value.
pub(crate) fn update<T, E>(
    key: &str,
    change: impl FnMut(&[u8]) -> Result<(Vec<u8>, T), E>,
) -> Result<T, UpdateError<E>> {
    erased(change, |change| update_erased(key, change))
}

/// [`update`] of a [`Change`].
pub(crate) fn update_erased(key: &str, change: &mut Change<'_>) -> Result<(), UpdateError<()>> {
    for _ in 0..ATTEMPTS {
        let (value, cas) = read(key)?;
        let next = change(&value).ok_or(UpdateError::Refused(()))?;
        match abi::set_shared_data(key, &next, Some(cas)) {
            Ok(Write::Done) => return Ok(()),
            Ok(Write::CasMismatch) => continue,
            Err(e) => return Err(UpdateError::Unavailable(format!("{e:?}"))),
        }
    }
    Err(UpdateError::Unavailable(format!(
        "{ATTEMPTS} attempts lost the race"
    )))
}

/// [`update_erased`] of the counters after the owner's id in a slot's value ([`with_owner`]):
/// unavailable ("`<what><key>` changed owner") once the slot is no longer `owner`'s.
pub(crate) fn update_owned(
    key: &str,
    owner: &str,
    change: &mut Change<'_>,
    what: &str,
) -> Result<(), UpdateError<()>> {
    let mut lost = false;
    let result = update_erased(key, &mut |value| {
        let (holder, state) = split_owner(value);
        lost = holder != Some(owner.as_bytes());
        if lost {
            return None;
        }
        change(state).map(|next| with_owner(owner, &next))
    });
    match result {
        Err(UpdateError::Refused(())) if lost => Err(UpdateError::Unavailable(format!(
            "{what}{key} changed owner"
        ))),
        result => result,
    }
}

// === Alert marks ===

/// The shared-data key of a listed tenant's alert marks (`policy::alerts::Marks`).
fn alert_key(tenant: &str) -> String {
    format!("tenant-guard/alerts/{tenant}")
}

/// The alert marks of the default tenant holding slot `slot`.
fn slot_alert_key(slot: usize) -> String {
    format!("tenant-guard/default-alerts/{slot}")
}

/// Creates the alert-mark keys of the listed tenants and of `slots` default-tenant slots, if
/// missing (before traffic, as the counters' keys).
pub fn ensure_alert_keys<'a>(listed: impl Iterator<Item = &'a str>, slots: usize) {
    for tenant in listed {
        ensure(&alert_key(tenant));
    }
    for slot in 0..slots {
        ensure(&slot_alert_key(slot));
    }
}

impl QuotaStore {
    /// Reads the tenant's alert marks, applies `change`, and writes the result back only if
    /// nobody wrote in between; otherwise starts over with the fresh value.
    pub fn update_alert_marks<T, E>(
        &mut self,
        key: &QuotaKey,
        change: impl FnMut(&[u8]) -> Result<(Vec<u8>, T), E>,
    ) -> Result<T, UpdateError<E>> {
        erased(change, |change| {
            let key = match key {
                QuotaKey::Listed(tenant) => alert_key(tenant),
                // Slots are never given up, so the slot's marks are the tenant's for good.
                QuotaKey::Default(tenant) => slot_alert_key(self.slot(tenant)?),
            };
            update_erased(&key, change)
        })
    }
}

// === The ownership store of provider-side objects ===

/// Who created which provider-side object (`policy::isolation::objects`): a fixed number of
/// bucket keys (`tenant-guard/objects/<n>`, created at load time), each one value of at most
/// `objects::BUCKET_ENTRIES` entries of 28 bytes, updated by compare-and-swap.
pub struct ObjectStore {
    buckets: usize,
    ttl_s: u64,
}

fn bucket_key(bucket: usize) -> String {
    format!("tenant-guard/objects/{bucket}")
}

impl ObjectStore {
    /// The store of `buckets` buckets, their keys created if missing (none when 0: off).
    pub fn new(buckets: usize, ttl_s: u64) -> ObjectStore {
        for bucket in 0..buckets {
            ensure(&bucket_key(bucket));
        }
        ObjectStore { buckets, ttl_s }
    }

    /// The store as seen at `now`.
    pub fn at(&self, now: u64) -> StoreAt<'_> {
        StoreAt {
            store: self,
            now: Some(now),
        }
    }

    /// The store as seen when it is asked (the host's clock is only read then).
    pub fn now(&self) -> StoreAt<'_> {
        StoreAt {
            store: self,
            now: None,
        }
    }

    /// Records `owner` as the owner of `id` (for `ttl_s`). Returns whether an entry closer to
    /// expiry had to give way.
    pub fn record(&self, id: &str, owner: OwnerDigest, now: u64) -> Result<Inserted, String> {
        if self.buckets == 0 {
            return Ok(Inserted::Added);
        }
        let digest = objects::id_digest(id);
        let key = bucket_key(objects::bucket_of(&digest, self.buckets));
        let entry = objects::Entry {
            id: digest,
            owner,
            expires_at: u32::try_from(now.saturating_add(self.ttl_s)).unwrap_or(u32::MAX),
        };
        update(&key, |value| {
            let mut bucket = objects::Bucket::decode(value);
            let inserted = bucket.insert(entry, now);
            Ok::<_, ()>((bucket.encode(), inserted))
        })
        .map_err(|e| match e {
            UpdateError::Refused(()) => "refused".to_string(),
            UpdateError::Unavailable(why) => why,
        })
    }
}

/// The ownership store at one moment: what the core asks about owners.
pub struct StoreAt<'a> {
    store: &'a ObjectStore,
    /// `None`: the host's clock at the question.
    now: Option<u64>,
}

impl Owners for StoreAt<'_> {
    fn owner_of(&self, id: &str) -> Option<OwnerDigest> {
        if self.store.buckets == 0 {
            return None;
        }
        let digest = objects::id_digest(id);
        let key = bucket_key(objects::bucket_of(&digest, self.store.buckets));
        let (value, _) = abi::shared_data(&key).ok()?;
        let now = self.now.or_else(super::now).unwrap_or(0);
        objects::Bucket::decode(&value.unwrap_or_default()).owner_of(&digest, now)
    }
}
