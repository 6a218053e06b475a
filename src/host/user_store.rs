//! Users' quota counters in shared data (`per_user`, `policy::user_quota`), beside their
//! tenants' (`shared.rs`), updated by compare-and-swap.
//!
//! Shared data never frees a key and has no atomic create, so every user key is made at load
//! time, `per_user.max_users` slots per tenant whose limits have `per_user`:
//! `tenant-guard/user/<tenant>/<n>` for a listed tenant, `tenant-guard/default-user/<slot>/<n>`
//! for the default tenant holding quota slot `<slot>`. A user's first request claims the first
//! free slot from the hash of its id on (by compare-and-swap on the existing slot, so two
//! workers cannot both claim one); its counters live there from then on. One more key per
//! tenant, `.../shared`, holds the counters of requests without a user and of users who found
//! every slot taken (see `policy::user_quota`).

use std::collections::HashMap;

use crate::host::shared::{self, Change, QuotaKey, QuotaStore, UpdateError};
use crate::policy::plan::Limits;
use crate::policy::user_quota::{Books, Ledger, StoreError};

/// How many users (per worker) the store remembers the slot of, before it starts over.
const REMEMBERED: usize = 65_536;

/// This worker's way into the users' counters.
#[derive(Default)]
pub struct UserStore {
    /// (tenant's key base, user) → the user's slot, or `None`: every slot was taken.
    found: HashMap<(String, String), Option<usize>>,
}

fn listed_base(tenant: &str) -> String {
    format!("tenant-guard/user/{tenant}")
}

fn slot_base(slot: usize) -> String {
    format!("tenant-guard/default-user/{slot}")
}

fn shared_key(base: &str) -> String {
    format!("{base}/shared")
}

/// Creates the user keys of a tenant whose counters live under `base` (before traffic).
fn ensure_users(base: &str, max_users: usize) {
    shared::ensure(&shared_key(base));
    for n in 0..max_users {
        shared::ensure(&format!("{base}/{n}"));
    }
}

impl UserStore {
    /// Creates the user keys of the listed tenants whose limits have `per_user` (`listed`:
    /// tenant and `max_users`), and of every default-tenant slot when the default tenant's
    /// limits have it, if missing.
    pub fn new<'a>(
        listed: impl Iterator<Item = (&'a str, usize)>,
        default_slots: usize,
        default_max_users: Option<usize>,
    ) -> UserStore {
        for (tenant, max_users) in listed {
            ensure_users(&listed_base(tenant), max_users);
        }
        if let Some(max_users) = default_max_users {
            for slot in 0..default_slots {
                ensure_users(&slot_base(slot), max_users);
            }
        }
        UserStore::default()
    }

    /// Reads the counters of `user` of `tenant` (the shared counter without a user, or when
    /// every slot is taken), applies `change`, and writes the result back only if nobody wrote
    /// in between.
    fn update(
        &mut self,
        quotas: &mut QuotaStore,
        tenant: &QuotaKey,
        user: Option<&str>,
        max_users: usize,
        change: &mut Change<'_>,
    ) -> Result<(), UpdateError<()>> {
        let base = match tenant {
            QuotaKey::Listed(tenant) => listed_base(tenant),
            QuotaKey::Default(tenant) => slot_base(quotas.default_slot(tenant)?),
        };
        let slot = match user {
            Some(user) => self.slot(&base, user, max_users)?,
            None => None,
        };
        match (slot, user) {
            (Some(slot), Some(user)) => {
                shared::update_owned(&format!("{base}/{slot}"), user, change, "")
            }
            _ => shared::update_erased(&shared_key(&base), change),
        }
    }

    /// The user's slot: the one found before, or a free one claimed now (linear probing from
    /// the hash of the user's id); `None` when every slot is another user's.
    fn slot<E>(
        &mut self,
        base: &str,
        user: &str,
        max_users: usize,
    ) -> Result<Option<usize>, UpdateError<E>> {
        let id = (base.to_string(), user.to_string());
        if let Some(found) = self.found.get(&id) {
            return Ok(*found);
        }
        let slots = max_users.max(1);
        let start =
            usize::try_from(shared::fnv1a(user.as_bytes()) % slots as u64).unwrap_or_default();
        let mut found = None;
        for probe in 0..slots {
            let slot = start.wrapping_add(probe) % slots;
            if shared::claim(&format!("{base}/{slot}"), user)? {
                found = Some(slot);
                break;
            }
        }
        if found.is_none() && shared::first_to_say(&format!("user-slots-full/{base}")) {
            log::warn!(
                "tenant-guard: every one of {slots} user slots under {base} is taken \
                 (per_user.max_users): a user counts in the tenant's shared user counter"
            );
        }
        if self.found.len() >= REMEMBERED {
            self.found.clear();
        }
        self.found.insert(id, found);
        Ok(found)
    }
}

/// One request's tenant and user counters, as `policy::user_quota` updates them.
pub struct RequestBooks<'a> {
    pub quotas: &'a mut QuotaStore,
    pub users: &'a mut UserStore,
    pub tenant: &'a QuotaKey,
    pub user: Option<&'a str>,
    pub limits: &'a Limits,
}

impl Ledger for RequestBooks<'_> {
    fn update<T, E>(
        &mut self,
        books: Books,
        change: impl FnMut(&[u8]) -> Result<(Vec<u8>, T), E>,
    ) -> Result<T, StoreError<E>> {
        let result = shared::erased(change, |change| match books {
            Books::Tenant => self.quotas.update(self.tenant, change),
            Books::User => {
                let max_users = self.limits.per_user.as_ref().map_or(1, |p| p.max_users);
                self.users
                    .update(self.quotas, self.tenant, self.user, max_users, change)
            }
        });
        result.map_err(|e| match e {
            UpdateError::Refused(e) => StoreError::Refused(e),
            UpdateError::Unavailable(why) => StoreError::Unavailable(why),
        })
    }

    fn lost(&mut self, what: &'static str) {
        log::error!("tenant-guard: {what}");
    }
}
