//! Per-worker cache of verified tokens, so a token's signature is checked once, not on
//! every request.
//!
//! Entries are keyed by a 64-bit SipHash of the token under this worker's random key (cheap,
//! and clients cannot aim collisions); each entry keeps its token, and a hit must be the exact
//! token, so two tokens never share an identity (a colliding token is a miss).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use super::identity::VerifiedToken;

type Key = u64;

struct Entry {
    /// Insertion number; matches the entry's slot in `order` (stale slots are skipped).
    seq: u64,
    token: Box<str>,
    verified: VerifiedToken,
}

pub struct TokenCache {
    capacity: usize,
    /// The hash key of this cache, random per worker.
    hasher: RandomState,
    entries: HashMap<Key, Entry>,
    /// Insertion order for FIFO eviction: (seq, key), oldest first.
    order: VecDeque<(u64, Key)>,
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
            hasher: RandomState::new(),
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
        let key = self.key(token);
        let live = self
            .entries
            .get(&key)
            .filter(|e| *e.token == *token)
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
        let key = self.key(token);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.make_room();
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.soonest_expiry = self.soonest_expiry.min(verified.expires_at);
        let token = token.into();
        self.entries.insert(
            key,
            Entry {
                seq,
                token,
                verified,
            },
        );
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

    fn key(&self, token: &str) -> Key {
        self.hasher.hash_one(token)
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

#[cfg(test)]
mod tests;
