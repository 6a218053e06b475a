//! Per-worker cache of verified tokens, so a token's signature is checked once, not on
//! every request.
//!
//! Entries are keyed by the SHA-256 of the token: a full-strength digest, so two tokens never
//! share an entry (a 64-bit hash could hand out someone else's identity), and the token itself
//! is never kept in memory.

use std::collections::{HashMap, VecDeque};

use super::identity::VerifiedToken;

type Digest = [u8; 32];

struct Entry {
    /// Insertion number; matches the entry's slot in `order` (stale slots are skipped).
    seq: u64,
    verified: VerifiedToken,
}

pub struct TokenCache {
    capacity: usize,
    entries: HashMap<Digest, Entry>,
    /// Insertion order for FIFO eviction: (seq, digest), oldest first.
    order: VecDeque<(u64, Digest)>,
    next_seq: u64,
    /// Latest `now` seen by `get`; `insert` has no clock, so it sweeps by this one.
    now: u64,
    /// Lower bound of the entries' `expires_at`: no sweep is needed while `now` is below it.
    soonest_expiry: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1024)),
            order: VecDeque::new(),
            next_seq: 0,
            now: 0,
            soonest_expiry: u64::MAX,
        }
    }

    /// The verified identity for this exact token, if cached and `now <= expires_at`; an
    /// expired entry is removed.
    pub fn get(&mut self, token: &str, now: u64) -> Option<&VerifiedToken> {
        self.now = self.now.max(now);
        let key = digest(token);
        let live = self
            .entries
            .get(&key)
            .map(|e| now <= e.verified.expires_at)?;
        if !live {
            self.entries.remove(&key);
            return None;
        }
        self.entries.get(&key).map(|e| &e.verified)
    }

    /// Caches `verified` for `token`. When full, expired entries go first, else the oldest.
    pub fn insert(&mut self, token: &str, verified: VerifiedToken) {
        if self.capacity == 0 {
            return;
        }
        let key = digest(token);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.make_room();
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.soonest_expiry = self.soonest_expiry.min(verified.expires_at);
        self.entries.insert(key, Entry { seq, verified });
        self.order.push_back((seq, key));
        // Slots of removed or replaced entries linger in `order`; keep it bounded.
        if self.order.len() > self.capacity.saturating_mul(2).saturating_add(16) {
            let entries = &self.entries;
            self.order
                .retain(|(seq, key)| entries.get(key).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Forgets everything (called when any key set changes).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.soonest_expiry = u64::MAX;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn make_room(&mut self) {
        if self.soonest_expiry < self.now {
            let now = self.now;
            self.entries.retain(|_, e| now <= e.verified.expires_at);
            self.soonest_expiry = self
                .entries
                .values()
                .map(|e| e.verified.expires_at)
                .min()
                .unwrap_or(u64::MAX);
        }
        while self.entries.len() >= self.capacity {
            let Some((seq, key)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&key);
            }
        }
    }
}

fn digest(token: &str) -> Digest {
    hmac_sha256::Hash::hash(token.as_bytes())
}

#[cfg(test)]
mod tests;
