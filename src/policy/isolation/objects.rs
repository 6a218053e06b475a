//! Provider-side objects (responses, conversations, stored chat completions, files, uploads,
//! vector stores, assistants, threads, batches, fine-tuning jobs; Anthropic message batches
//! and files): which tenant created which, so that tenants sharing one provider account cannot
//! read, continue, delete or list each other's.
//!
//! - [`route`] says what a request does to objects from its method and path: creates one
//!   (its id is in the answer), names one (in the path: the request is the owner's only),
//!   lists a collection (the answer is cut to the tenant's objects), or nothing.
//! - [`references`] finds the objects a request body names (`previous_response_id`,
//!   `conversation`, `file_id`, `file_ids`, `vector_store_ids`, `input_file_id`,
//!   `training_file`, `validation_file`, `thread_id`, `assistant_id`), at any depth.
//! - [`check`] decides a named object against its recorded owner: the owner's own passes,
//!   anything else (another tenant's, or one never seen created, unless the tenant's
//!   `object_prefixes` cover its id) is refused as not found, so existence is not revealed.
//! - [`filter_listing`] keeps a listing's own objects.
//! - [`Bucket`] is one slot of the ownership store the shell keeps in shared data: bounded
//!   (a fixed number of buckets of [`BUCKET_ENTRIES`] entries each), expiring (`ttl_s`), 28
//!   bytes an object (a 16-byte digest of its id, an 8-byte digest of its owner, an expiry).
//!
//! Paths are matched from their `v1` segment on, so a gateway prefix in front does not matter.

use std::cell::OnceCell;

use serde_json::{Map, Value};

use crate::policy::denial::Reason;
use crate::policy::namespace::{quoted, PathRefusal};

/// Entries a bucket of the ownership store holds.
pub const BUCKET_ENTRIES: usize = 16;
/// Most object references one request body may name.
const MAX_REFERENCES: usize = 256;
/// Longest object id accepted.
const MAX_ID_BYTES: usize = 256;

/// What a request does to provider-side objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// The object its path names: the request is that object's owner's only.
    pub named: Option<String>,
    /// It creates an object, whose id its answer carries.
    pub creates: Option<Create>,
    /// It lists a collection: its answer is cut to the tenant's objects.
    pub lists: bool,
}

/// An object a request creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Create {
    pub id_field: IdField,
    pub stored: Stored,
}

/// Where the created object's id is in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdField {
    /// The top-level `id` (also the `response.id` of a Responses stream).
    Id,
    /// The top-level `thread_id` (`POST /v1/threads/runs` creates a thread with its run).
    ThreadId,
    /// `file.id` (`POST /v1/uploads/{id}/complete` creates a file).
    FileId,
}

/// When the provider keeps what the request creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Always,
    /// Only when the body says `"store": true` (chat completions).
    IfAsked,
    /// Unless the body says `"store": false` (Responses).
    UnlessDeclined,
}

/// The collections of objects, as path segments after `v1`, and whether `GET` lists them.
const COLLECTIONS: [(&[&str], bool); 12] = [
    (&["responses"], false),
    (&["conversations"], false),
    (&["chat", "completions"], true),
    (&["files"], true),
    (&["uploads"], false),
    (&["vector_stores"], true),
    (&["assistants"], true),
    (&["threads"], false),
    (&["threads", "runs"], false),
    (&["batches"], true),
    (&["fine_tuning", "jobs"], true),
    (&["messages", "batches"], true),
];

/// What `method` on `path` (normalised, query excluded) does to objects.
pub fn route(method: &str, path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(v1) = segments.iter().position(|s| *s == "v1") else {
        return Route::default();
    };
    let rest = segments.get(v1.saturating_add(1)..).unwrap_or_default();
    // The longest collection the path starts with.
    let Some(&(collection, listed)) = COLLECTIONS
        .iter()
        .filter(|(c, _)| rest.starts_with(c))
        .max_by_key(|(c, _)| c.len())
    else {
        return Route::default();
    };
    let below = rest.get(collection.len()..).unwrap_or_default();
    let post = method == "POST";
    match below {
        [] => Route {
            creates: post.then_some(Create {
                id_field: if collection == ["threads", "runs"] {
                    IdField::ThreadId
                } else {
                    IdField::Id
                },
                stored: match collection {
                    ["chat", "completions"] => Stored::IfAsked,
                    ["responses"] => Stored::UnlessDeclined,
                    _ => Stored::Always,
                },
            }),
            lists: listed && method == "GET",
            named: None,
        },
        [id, after @ ..] => Route {
            named: Some((*id).to_string()),
            creates: (post && collection == ["uploads"] && after == ["complete"]).then_some(
                Create {
                    id_field: IdField::FileId,
                    stored: Stored::Always,
                },
            ),
            lists: false,
        },
    }
}

impl Create {
    /// Whether the provider keeps the object, by what the request body says about `store`.
    pub fn is_stored(&self, body: Option<&[u8]>) -> bool {
        let store = || {
            body.and_then(|b| crate::policy::json::from_slice::<Map<String, Value>>(b).ok())
                .and_then(|m| m.get("store").and_then(Value::as_bool))
        };
        match self.stored {
            Stored::Always => true,
            Stored::IfAsked => store() == Some(true),
            Stored::UnlessDeclined => store() != Some(false),
        }
    }
}

/// Keys whose values name objects (a string, or a list of strings for the plural ones).
const REFERENCE_KEYS: [&str; 10] = [
    "previous_response_id",
    "conversation",
    "file_id",
    "file_ids",
    "vector_store_ids",
    "input_file_id",
    "training_file",
    "validation_file",
    "thread_id",
    "assistant_id",
];

/// The object ids a request body names, at any depth; `Err` for a body naming more than a
/// request plausibly does, or ids that cannot be ids. A body that is not JSON names nothing.
pub fn references(body: &[u8]) -> Result<Vec<String>, PathRefusal> {
    let Ok(value) = crate::policy::json::from_slice::<Value>(body) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    collect(&value, &mut found)?;
    Ok(found)
}

fn collect(value: &Value, found: &mut Vec<String>) -> Result<(), PathRefusal> {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                if REFERENCE_KEYS.contains(&key.as_str()) {
                    reference(key, item, found)?;
                } else {
                    collect(item, found)?;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, found)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn reference(key: &str, value: &Value, found: &mut Vec<String>) -> Result<(), PathRefusal> {
    match value {
        Value::String(id) => push(found, id),
        Value::Array(ids) => ids.iter().try_for_each(|id| match id {
            Value::String(id) => push(found, id),
            _ => Err(invalid(key)),
        }),
        // `conversation` may be `{"id": "conv_..."}`.
        Value::Object(map) => match map.get("id") {
            Some(Value::String(id)) => push(found, id),
            _ => collect(value, found),
        },
        Value::Null => Ok(()),
        _ => Err(invalid(key)),
    }
}

fn push(found: &mut Vec<String>, id: &str) -> Result<(), PathRefusal> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || found.len() >= MAX_REFERENCES {
        return Err(PathRefusal::new(
            Reason::InvalidBody,
            format!("object reference {} is not acceptable", quoted(id)),
        ));
    }
    found.push(id.to_string());
    Ok(())
}

fn invalid(key: &str) -> PathRefusal {
    PathRefusal::new(
        Reason::InvalidBody,
        format!("{} must name objects by string ids", quoted(key)),
    )
}

/// 8 bytes identifying a tenant as an owner.
pub type OwnerDigest = [u8; 8];
/// 16 bytes identifying an object id.
pub type IdDigest = [u8; 16];

/// The owner digest of a tenant (its quota id: listed tenants by id, default tenants by
/// provider and id).
pub fn owner_digest(tenant: &str) -> OwnerDigest {
    let mut hash = hmac_sha256::Hash::new();
    hash.update(b"tenant-guard owner\0");
    hash.update(tenant.as_bytes());
    let hash = hash.finalize();
    let mut out = [0; 8];
    out.copy_from_slice(hash.get(..8).unwrap_or(&[0; 8]));
    out
}

pub fn id_digest(id: &str) -> IdDigest {
    let mut hash = hmac_sha256::Hash::new();
    hash.update(b"tenant-guard object\0");
    hash.update(id.as_bytes());
    let hash = hash.finalize();
    let mut out = [0; 16];
    out.copy_from_slice(hash.get(..16).unwrap_or(&[0; 16]));
    out
}

/// The bucket of the store an object id lives in.
pub fn bucket_of(id: &IdDigest, buckets: usize) -> usize {
    let mut n = [0; 8];
    n.copy_from_slice(id.get(..8).unwrap_or(&[0; 8]));
    usize::try_from(u64::from_le_bytes(n) % buckets.max(1) as u64).unwrap_or_default()
}

/// Who created which object, as the gateway remembers it (the shell's shared-data store).
pub trait Owners {
    /// The owner of `id`, when it is remembered.
    fn owner_of(&self, id: &str) -> Option<OwnerDigest>;
}

/// Owners as a map, for tests of the core.
#[cfg(test)]
#[derive(Default)]
pub struct Remembered(pub std::collections::HashMap<String, OwnerDigest>);

#[cfg(test)]
impl Owners for Remembered {
    fn owner_of(&self, id: &str) -> Option<OwnerDigest> {
        self.0.get(id).copied()
    }
}

/// What the tenant of a request may do with objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPlan {
    pub route: Route,
    /// The tenant's quota id, whose digest owns its objects.
    tenant: String,
    /// That digest, once an object was looked up (most requests never name one).
    owner: OnceCell<OwnerDigest>,
    /// Ids the tenant may use though the gateway never saw them created (migration).
    pub prefixes: Vec<String>,
}

impl ObjectPlan {
    /// The plan of the tenant whose quota id is `tenant`, for a request on `route`.
    pub fn new(route: Route, tenant: &str, prefixes: Vec<String>) -> ObjectPlan {
        ObjectPlan {
            route,
            tenant: tenant.to_string(),
            owner: OnceCell::new(),
            prefixes,
        }
    }

    /// Whether the tenant may use `id`; `Err` says why not.
    pub fn allows(&self, id: &str, owners: &dyn Owners) -> Result<(), PathRefusal> {
        let recorded = owners.owner_of(id);
        // The tenant's digest is compared only with a recorded owner.
        let me = recorded
            .map(|_| *self.owner.get_or_init(|| owner_digest(&self.tenant)))
            .unwrap_or_default();
        check(id, recorded, &me, &self.prefixes)
    }
}

/// Whether the tenant `me` may use the object `id`, whose recorded owner is `owner`.
pub fn check(
    id: &str,
    owner: Option<OwnerDigest>,
    me: &OwnerDigest,
    prefixes: &[String],
) -> Result<(), PathRefusal> {
    match owner {
        Some(owner) if owner == *me => Ok(()),
        None if prefixes.iter().any(|p| id.starts_with(p.as_str())) => Ok(()),
        Some(_) => Err(PathRefusal::new(
            Reason::ProviderObjectNotFound,
            format!("object {} belongs to another tenant", quoted(id)),
        )),
        None => Err(PathRefusal::new(
            Reason::ProviderObjectNotFound,
            format!("object {} was never seen created", quoted(id)),
        )),
    }
}

/// A listing (`{"data": [{"id": ...}, ...], "first_id", "last_id", ...}`) cut to the objects
/// `owned` says are the tenant's; `None` when the body is not such a listing.
pub fn filter_listing(body: &[u8], mut owned: impl FnMut(&str) -> bool) -> Option<Vec<u8>> {
    let mut listing = crate::policy::json::from_slice::<Map<String, Value>>(body).ok()?;
    let data = listing.get_mut("data")?.as_array_mut()?;
    data.retain(|item| {
        item.get("id")
            .and_then(Value::as_str)
            .is_some_and(&mut owned)
    });
    let first = data.first().and_then(|i| i.get("id")).cloned();
    let last = data.last().and_then(|i| i.get("id")).cloned();
    for (key, id) in [("first_id", first), ("last_id", last)] {
        if listing.contains_key(key) {
            listing.insert(key.to_string(), id.unwrap_or(Value::Null));
        }
    }
    serde_json::to_vec(&listing).ok()
}

/// One object's entry in the ownership store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: IdDigest,
    pub owner: OwnerDigest,
    /// Unix seconds.
    pub expires_at: u32,
}

const ENTRY_BYTES: usize = 16 + 8 + 4;

/// One bucket of the ownership store, as kept in one shared-data value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    entries: Vec<Entry>,
}

/// What an insertion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Added,
    /// The bucket was full: the entry closest to expiry gave way.
    Evicted,
}

impl Bucket {
    /// Anything unreadable counts as an empty bucket.
    pub fn decode(bytes: &[u8]) -> Bucket {
        let entries = bytes
            .chunks_exact(ENTRY_BYTES)
            .filter_map(|chunk| {
                let (id, rest) = chunk.split_first_chunk::<16>()?;
                let (owner, rest) = rest.split_first_chunk::<8>()?;
                let expires_at = u32::from_le_bytes(*rest.first_chunk::<4>()?);
                Some(Entry {
                    id: *id,
                    owner: *owner,
                    expires_at,
                })
            })
            .collect();
        Bucket { entries }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_BYTES);
        for e in &self.entries {
            out.extend_from_slice(&e.id);
            out.extend_from_slice(&e.owner);
            out.extend_from_slice(&e.expires_at.to_le_bytes());
        }
        out
    }

    /// The owner of `id`, if recorded and not expired at `now`.
    pub fn owner_of(&self, id: &IdDigest, now: u64) -> Option<OwnerDigest> {
        self.entries
            .iter()
            .find(|e| e.id == *id && u64::from(e.expires_at) > now)
            .map(|e| e.owner)
    }

    /// Records `entry` (its id once): drops expired entries, and when the bucket is still
    /// full, the one closest to expiry.
    pub fn insert(&mut self, entry: Entry, now: u64) -> Inserted {
        self.entries
            .retain(|e| u64::from(e.expires_at) > now && e.id != entry.id);
        let mut inserted = Inserted::Added;
        while self.entries.len() >= BUCKET_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.expires_at)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                self.entries.remove(i);
                inserted = Inserted::Evicted;
            }
        }
        self.entries.push(entry);
        inserted
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
