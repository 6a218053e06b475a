#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

const NOW: u64 = 1_700_000_000;

fn verified(tenant: &str, expires_at: u64) -> VerifiedToken {
    VerifiedToken {
        provider: 0,
        tenant: tenant.into(),
        user: Some("alice".into()),
        forwarded: vec![("x-user-id".into(), "alice".into())],
        expires_at,
    }
}

#[test]
fn cached_token_is_returned_for_the_exact_token_only() {
    let mut cache = TokenCache::new(8);
    assert_eq!(cache.get("t1", NOW), None);
    cache.insert("t1", verified("acme", NOW + 60));
    assert_eq!(cache.get("t1", NOW), Some(&verified("acme", NOW + 60)));
    assert_eq!(cache.get("t1 ", NOW), None);
    assert_eq!(cache.get("T1", NOW), None);
    assert_eq!(cache.len(), 1);
}

#[test]
fn entry_is_valid_until_expires_at_inclusive_then_removed() {
    let mut cache = TokenCache::new(8);
    cache.insert("t1", verified("acme", NOW + 60));
    assert!(cache.get("t1", NOW + 60).is_some());
    assert_eq!(cache.get("t1", NOW + 61), None);
    assert_eq!(cache.len(), 0);
    // Gone for good: an earlier `now` does not bring it back.
    assert_eq!(cache.get("t1", NOW), None);
}

#[test]
fn reinserting_a_token_replaces_its_entry() {
    let mut cache = TokenCache::new(2);
    cache.insert("t1", verified("acme", NOW + 60));
    cache.insert("t1", verified("acme", NOW + 120));
    assert_eq!(cache.len(), 1);
    assert_eq!(
        cache.get("t1", NOW + 100).map(|v| v.expires_at),
        Some(NOW + 120)
    );
}

#[test]
fn full_cache_evicts_the_oldest_entry() {
    let mut cache = TokenCache::new(3);
    for t in ["t1", "t2", "t3", "t4"] {
        cache.insert(t, verified(t, NOW + 600));
    }
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get("t1", NOW), None);
    for t in ["t2", "t3", "t4"] {
        assert_eq!(cache.get(t, NOW).map(|v| v.tenant.as_str()), Some(t));
    }
}

#[test]
fn full_cache_evicts_expired_entries_before_the_oldest() {
    let mut cache = TokenCache::new(3);
    cache.insert("old", verified("old", NOW + 600));
    cache.insert("short", verified("short", NOW + 10));
    cache.insert("new", verified("new", NOW + 600));
    // Time passes (as seen through `get`); "short" has expired.
    assert!(cache.get("new", NOW + 100).is_some());
    cache.insert("newer", verified("newer", NOW + 700));
    assert_eq!(cache.len(), 3);
    assert!(cache.get("old", NOW + 100).is_some());
    assert!(cache.get("short", NOW + 5).is_none());
}

#[test]
fn eviction_order_survives_removals_and_reinsertions() {
    let mut cache = TokenCache::new(2);
    cache.insert("a", verified("a", NOW + 10));
    cache.insert("b", verified("b", NOW + 600));
    assert!(cache.get("a", NOW + 20).is_none()); // expired and removed
    cache.insert("a", verified("a", NOW + 600)); // now the newest
    cache.insert("c", verified("c", NOW + 600)); // evicts "b", the oldest live entry
    assert!(cache.get("b", NOW + 20).is_none());
    assert!(cache.get("a", NOW + 20).is_some());
    assert!(cache.get("c", NOW + 20).is_some());
}

#[test]
fn bookkeeping_stays_bounded_under_churn() {
    let mut cache = TokenCache::new(4);
    for i in 0..1_000u64 {
        let token = format!("t{}", i % 3);
        cache.insert(&token, verified("acme", NOW + i));
        let _ = cache.get(&token, NOW + i + 1); // expires every entry right away
    }
    assert!(cache.len() <= 4);
    assert!(cache.order.len() <= 2 * 4 + 16);
}

#[test]
fn clear_forgets_everything() {
    let mut cache = TokenCache::new(4);
    cache.insert("t1", verified("acme", NOW + 60));
    cache.insert("t2", verified("globex", NOW + 60));
    cache.clear();
    assert_eq!(cache.len(), 0);
    assert!(cache.is_empty());
    assert_eq!(cache.get("t1", NOW), None);
    cache.insert("t1", verified("acme", NOW + 60));
    assert!(cache.get("t1", NOW).is_some());
}

#[test]
fn zero_capacity_caches_nothing() {
    let mut cache = TokenCache::new(0);
    cache.insert("t1", verified("acme", NOW + 60));
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.get("t1", NOW), None);
}

#[test]
fn a_token_colliding_with_a_cached_one_is_a_miss() {
    let mut cache = TokenCache::new(4);
    cache.insert("t1", verified("acme", NOW + 60));
    // Forge a collision: "t2" under the key of "t1".
    let entry = cache.entries.remove(&cache.key("t1"));
    if let Some(entry) = entry {
        cache.entries.insert(cache.key("t2"), entry);
    }
    assert_eq!(cache.get("t2", NOW), None);
    assert_eq!(cache.get("t1", NOW), None);
}
