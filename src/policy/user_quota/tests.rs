use std::collections::HashMap;

use super::*;
use crate::policy::plan::{
    check_per_user as check, finish_per_user as finish, PerUser, RawPerUser, Window as Plan,
    DEFAULT_MAX_USERS,
};
use crate::policy::quota::Kind;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;

fn plan(w: &[(u64, u64)]) -> Vec<Plan> {
    w.iter()
        .map(|&(limit, window_s)| Plan { limit, window_s })
        .collect()
}

/// Request and token windows, as (limit, window_s) pairs.
type Pairs<'a> = (&'a [(u64, u64)], &'a [(u64, u64)]);

fn limits(tenant: Pairs<'_>, user: Pairs<'_>) -> Limits {
    Limits {
        requests: plan(tenant.0),
        tokens: plan(tenant.1),
        per_user: Some(PerUser {
            limits: Box::new(Limits {
                requests: plan(user.0),
                tokens: plan(user.1),
                ..Limits::default()
            }),
            max_users: 10,
        }),
        ..Limits::default()
    }
}

fn demand(tokens: u64) -> Demand {
    Demand {
        tokens,
        micro_usd: 0,
    }
}

/// Counters in memory: one tenant, many users, and the user the next request is about.
#[derive(Default)]
struct Memory {
    tenant: Vec<u8>,
    users: HashMap<&'static str, Vec<u8>>,
    user: &'static str,
    /// Fail every update of these books.
    broken: Option<Books>,
    lost: Vec<&'static str>,
}

impl Ledger for Memory {
    fn update<T, E>(
        &mut self,
        books: Books,
        mut change: impl FnMut(&[u8]) -> Result<(Vec<u8>, T), E>,
    ) -> Result<T, StoreError<E>> {
        if self.broken == Some(books) {
            return Err(StoreError::Unavailable("broken".into()));
        }
        let value = match books {
            Books::Tenant => &mut self.tenant,
            Books::User => self.users.entry(self.user).or_default(),
        };
        let (next, out) = change(value).map_err(StoreError::Refused)?;
        *value = next;
        Ok(out)
    }

    fn lost(&mut self, what: &'static str) {
        self.lost.push(what);
    }
}

impl Memory {
    fn as_user(&mut self, user: &'static str) -> &mut Self {
        self.user = user;
        self
    }

    fn counts(&self, books: Books, user: &str) -> Vec<(Kind, u64, u64)> {
        let bytes = match books {
            Books::Tenant => self.tenant.clone(),
            Books::User => self.users.get(user).cloned().unwrap_or_default(),
        };
        QuotaState::decode(&bytes).counts()
    }
}

fn held(admission: Admission) -> (Reservation, Vec<WindowStatus>) {
    match admission {
        Admission::Held(r, w) => (r, w),
        other => panic!("not admitted: {other:?}"),
    }
}

fn refused(admission: Admission) -> Refusal {
    match admission {
        Admission::Refused(r) => r,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_user_at_their_limit_is_refused_with_the_user_reason_and_the_tenant_is_untouched() {
    let l = limits((&[(10, 60)], &[]), (&[(2, 60)], &[]));
    let mut m = Memory::default();
    for _ in 0..2 {
        held(admit(m.as_user("alice"), &l, NOW, demand(0)));
    }
    let before = m.tenant.clone();
    let refusal = refused(admit(m.as_user("alice"), &l, NOW, demand(0)));
    assert_eq!(refusal.reason, Reason::UserRequestQuotaExceeded);
    assert_eq!(m.tenant, before);
    // The headers show the tighter window: the user's, with nothing left.
    assert_eq!(refusal.windows.len(), 1);
    assert_eq!(
        (refusal.windows[0].limit, refusal.windows[0].remaining),
        (2, 0)
    );
    // Another user still gets in.
    held(admit(m.as_user("bob"), &l, NOW, demand(0)));
}

#[test]
fn the_tenant_limit_holds_across_users_and_a_refused_user_admission_is_withdrawn() {
    let l = limits((&[(3, 60)], &[]), (&[(2, 60)], &[]));
    let mut m = Memory::default();
    held(admit(m.as_user("alice"), &l, NOW, demand(0)));
    held(admit(m.as_user("bob"), &l, NOW, demand(0)));
    held(admit(m.as_user("carol"), &l, NOW, demand(0)));
    let refusal = refused(admit(m.as_user("dave"), &l, NOW, demand(0)));
    assert_eq!(refusal.reason, Reason::RequestQuotaExceeded);
    // Dave's own window counts nothing for the refused request.
    assert_eq!(m.counts(Books::User, "dave"), vec![(Kind::Requests, 0, 0)]);
    assert_eq!(m.counts(Books::Tenant, ""), vec![(Kind::Requests, 3, 0)]);
}

#[test]
fn the_windows_shown_are_the_tighter_of_user_and_tenant() {
    let l = limits(
        (&[(100, 60)], &[(1000, 3600)]),
        (&[(5, 60)], &[(5000, 3600)]),
    );
    let mut m = Memory::default();
    let (_, windows) = held(admit(m.as_user("alice"), &l, NOW, demand(10)));
    let view: Vec<(Kind, u64, u64)> = windows
        .iter()
        .map(|w| (w.kind, w.limit, w.remaining))
        .collect();
    // Requests: the user's 5 is tighter; tokens: the tenant's 1000 is.
    assert_eq!(
        view,
        vec![(Kind::Requests, 5, 4), (Kind::Tokens, 1000, 1000)]
    );
    let headers = quota::rate_limit_headers(&windows);
    assert_eq!(
        headers[0].1,
        "\"requests-60s\";q=5;w=60, \"tokens-3600s\";q=1000;w=3600"
    );
}

#[test]
fn user_windows_the_tenant_lacks_are_shown_too() {
    let t = [WindowStatus {
        kind: Kind::Requests,
        window_s: 60,
        limit: 10,
        remaining: 3,
        resets_in: 5,
    }];
    let u = [
        WindowStatus {
            remaining: 7,
            ..t[0]
        },
        WindowStatus {
            kind: Kind::Tokens,
            window_s: 60,
            limit: 50,
            remaining: 20,
            resets_in: 5,
        },
    ];
    assert_eq!(tighter(&t, &u), vec![t[0], u[1]]);
}

#[test]
fn a_token_window_of_the_user_refuses_with_its_own_reason() {
    let l = limits((&[], &[(1000, 3600)]), (&[], &[(100, 3600)]));
    let mut m = Memory::default();
    let (r, _) = held(admit(m.as_user("alice"), &l, NOW, demand(10)));
    let used = Actual {
        tokens: 150,
        micro_usd: 0,
    };
    settle(m.as_user("alice"), &l, NOW, &r, used).unwrap();
    let refusal = refused(admit(m.as_user("alice"), &l, NOW, demand(10)));
    assert_eq!(refusal.reason, Reason::UserTokenQuotaExceeded);
    // The tenant's window took the real usage too.
    assert_eq!(m.counts(Books::Tenant, ""), vec![(Kind::Tokens, 150, 0)]);
}

#[test]
fn a_user_budget_refuses_with_user_budget_exceeded() {
    let mut l = limits((&[], &[]), (&[], &[]));
    l.monthly_budget_micro_usd = Some(10_000_000);
    if let Some(p) = &mut l.per_user {
        p.limits.monthly_budget_micro_usd = Some(1_000);
    }
    let mut m = Memory::default();
    let (r, _) = held(admit(m.as_user("alice"), &l, NOW, Demand::default()));
    let spent = Actual {
        tokens: 0,
        micro_usd: 1_000,
    };
    settle(m.as_user("alice"), &l, NOW, &r, spent).unwrap();
    let refusal = refused(admit(m.as_user("alice"), &l, NOW, Demand::default()));
    assert_eq!(refusal.reason, Reason::UserBudgetExceeded);
    held(admit(m.as_user("bob"), &l, NOW, Demand::default()));
}

#[test]
fn per_user_limits_alone_count_only_the_users() {
    let l = limits((&[], &[]), (&[(1, 60)], &[]));
    let mut m = Memory::default();
    held(admit(m.as_user("alice"), &l, NOW, demand(0)));
    assert_eq!(
        refused(admit(m.as_user("alice"), &l, NOW, demand(0))).reason,
        Reason::UserRequestQuotaExceeded
    );
    assert!(m.tenant.is_empty());
}

#[test]
fn without_per_user_the_tenant_alone_counts() {
    let mut l = limits((&[(1, 60)], &[]), (&[], &[]));
    l.per_user = None;
    let mut m = Memory::default();
    held(admit(m.as_user("alice"), &l, NOW, demand(0)));
    assert!(m.users.is_empty());
    assert_eq!(
        admit(m.as_user("alice"), &Limits::default(), NOW, demand(0)),
        Admission::Unlimited
    );
}

#[test]
fn unavailable_tenant_counters_withdraw_the_user_admission() {
    let l = limits((&[(10, 60)], &[]), (&[(5, 60)], &[]));
    let mut m = Memory {
        broken: Some(Books::Tenant),
        ..Memory::default()
    };
    assert!(matches!(
        admit(m.as_user("alice"), &l, NOW, demand(0)),
        Admission::Unavailable(_)
    ));
    assert_eq!(m.counts(Books::User, "alice"), vec![(Kind::Requests, 0, 0)]);
}

#[test]
fn the_body_estimate_is_reserved_in_both() {
    let l = limits((&[], &[(1000, 3600)]), (&[], &[(500, 3600)]));
    let mut m = Memory::default();
    let (provisional, _) = held(admit(m.as_user("alice"), &l, NOW, demand(16)));
    let r = reserve(m.as_user("alice"), &l, NOW + 1, &provisional, demand(40)).unwrap();
    assert_eq!(m.counts(Books::User, "alice"), vec![(Kind::Tokens, 0, 40)]);
    assert_eq!(m.counts(Books::Tenant, ""), vec![(Kind::Tokens, 0, 40)]);
    let used = Actual {
        tokens: 33,
        micro_usd: 0,
    };
    settle(m.as_user("alice"), &l, NOW + 2, &r, used).unwrap();
    assert_eq!(m.counts(Books::User, "alice"), vec![(Kind::Tokens, 33, 0)]);
    assert_eq!(m.counts(Books::Tenant, ""), vec![(Kind::Tokens, 33, 0)]);
}

fn rule() -> OutputCap {
    OutputCap {
        min_output_tokens: 16,
    }
}

fn ask(input: u64, requested: Option<u64>) -> Ask {
    Ask {
        input_tokens: input,
        requested,
        choices: 1,
        price: None,
        default_output: 256,
    }
}

#[test]
fn the_output_cap_takes_the_user_window_when_it_is_tighter() {
    let l = limits((&[], &[(10_000, 3600)]), (&[], &[(300, 3600)]));
    let mut m = Memory::default();
    let (provisional, _) = held(admit(m.as_user("alice"), &l, NOW, demand(16)));
    let Capped::Reserved(r, cap) = cap(
        m.as_user("alice"),
        &l,
        NOW,
        &provisional,
        &ask(100, Some(1000)),
        rule(),
    ) else {
        panic!("not capped")
    };
    // 300 - 100 input = 200 for output.
    assert_eq!((cap.per_choice, cap.rewrite), (200, true));
    assert_eq!(r.demand.tokens, 300);
    assert_eq!(m.counts(Books::User, "alice"), vec![(Kind::Tokens, 0, 300)]);
    assert_eq!(m.counts(Books::Tenant, ""), vec![(Kind::Tokens, 0, 300)]);
}

#[test]
fn the_output_cap_takes_the_tenant_window_when_it_is_tighter_and_lowers_the_user_hold() {
    let l = limits((&[], &[(250, 3600)]), (&[], &[(10_000, 3600)]));
    let mut m = Memory::default();
    let (provisional, _) = held(admit(m.as_user("alice"), &l, NOW, demand(16)));
    let Capped::Reserved(r, cap) = cap(
        m.as_user("alice"),
        &l,
        NOW,
        &provisional,
        &ask(50, Some(1000)),
        rule(),
    ) else {
        panic!("not capped")
    };
    assert_eq!(cap.per_choice, 200);
    assert_eq!(r.demand.tokens, 250);
    assert_eq!(m.counts(Books::User, "alice"), vec![(Kind::Tokens, 0, 250)]);
    assert_eq!(m.counts(Books::Tenant, ""), vec![(Kind::Tokens, 0, 250)]);
}

#[test]
fn an_output_cap_under_the_minimum_in_the_user_window_refuses_as_the_user() {
    let l = limits((&[], &[(10_000, 3600)]), (&[], &[(110, 3600)]));
    let mut m = Memory::default();
    let (provisional, _) = held(admit(m.as_user("alice"), &l, NOW, demand(16)));
    let Capped::Refused(refusal) = cap(
        m.as_user("alice"),
        &l,
        NOW,
        &provisional,
        &ask(100, Some(50)),
        rule(),
    ) else {
        panic!("not refused")
    };
    assert_eq!(refusal.reason, Reason::UserTokenQuotaExceeded);
    // Nothing changed: the provisional hold stays in both until the request is settled.
    assert_eq!(m.counts(Books::User, "alice"), vec![(Kind::Tokens, 0, 16)]);
    assert_eq!(m.counts(Books::Tenant, ""), vec![(Kind::Tokens, 0, 16)]);
}

#[test]
fn a_tenant_refusal_of_the_cap_puts_the_provisional_hold_back_in_the_user_counters() {
    let l = limits((&[], &[(110, 3600)]), (&[], &[(10_000, 3600)]));
    let mut m = Memory::default();
    let (provisional, _) = held(admit(m.as_user("alice"), &l, NOW, demand(16)));
    let Capped::Refused(refusal) = cap(
        m.as_user("alice"),
        &l,
        NOW,
        &provisional,
        &ask(100, Some(50)),
        rule(),
    ) else {
        panic!("not refused")
    };
    assert_eq!(refusal.reason, Reason::TokenQuotaExceeded);
    assert_eq!(m.counts(Books::User, "alice"), vec![(Kind::Tokens, 0, 16)]);
    settle(m.as_user("alice"), &l, NOW, &provisional, Actual::default()).unwrap();
    assert_eq!(m.counts(Books::User, "alice"), vec![(Kind::Tokens, 0, 0)]);
    assert_eq!(m.counts(Books::Tenant, ""), vec![(Kind::Tokens, 0, 0)]);
}

/// xorshift64*: a fixed-seed generator for the property run below.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

/// Random interleavings of admissions, re-estimates and settlements across users: at every
/// step the tenant's counters equal the sum of its users' (used and reserved alike), no
/// window is admitted past its request limit, and once everything is settled nothing stays
/// reserved.
#[test]
fn property_tenant_books_are_the_sum_of_user_books() {
    const USERS: [&str; 4] = ["a", "b", "c", "d"];
    for seed in 1..40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let tenant_requests = 5 + rng.next(20);
        let user_requests = 1 + rng.next(8);
        let l = limits(
            (&[(tenant_requests, 60)], &[(5_000, 3600)]),
            (&[(user_requests, 60)], &[(1_500, 3600)]),
        );
        let mut m = Memory::default();
        let mut open: Vec<(&'static str, Reservation)> = Vec::new();
        let mut admitted = HashMap::<&str, u64>::new();
        for step in 0..200u64 {
            let now = NOW + step / 10;
            let user = USERS[usize::try_from(rng.next(4)).unwrap()];
            match rng.next(3) {
                0 => {
                    if let Admission::Held(r, _) =
                        admit(m.as_user(user), &l, now, demand(rng.next(300)))
                    {
                        open.push((user, r));
                        *admitted.entry(user).or_default() += 1;
                    }
                }
                1 if !open.is_empty() => {
                    let i = usize::try_from(rng.next(open.len() as u64)).unwrap();
                    let (u, r) = open[i];
                    let r = reserve(m.as_user(u), &l, now, &r, demand(rng.next(300))).unwrap();
                    open[i] = (u, r);
                }
                _ if !open.is_empty() => {
                    let i = usize::try_from(rng.next(open.len() as u64)).unwrap();
                    let (u, r) = open.swap_remove(i);
                    let used = Actual {
                        tokens: rng.next(400),
                        micro_usd: 0,
                    };
                    settle(m.as_user(u), &l, now, &r, used).unwrap();
                }
                _ => {}
            }
            let tenant = m.counts(Books::Tenant, "");
            let mut sum = vec![(Kind::Requests, 0, 0), (Kind::Tokens, 0, 0)];
            for u in USERS {
                for (i, (_, used, reserved)) in m.counts(Books::User, u).into_iter().enumerate() {
                    sum[i].1 += used;
                    sum[i].2 += reserved;
                }
            }
            if !tenant.is_empty() {
                assert_eq!(tenant, sum, "seed {seed} step {step}");
                assert!(tenant[0].1 <= tenant_requests);
            }
            for u in USERS {
                if let Some((_, used, _)) = m.counts(Books::User, u).first() {
                    assert!(*used <= user_requests, "seed {seed}: {u} over its limit");
                }
            }
        }
        for (u, r) in open.drain(..) {
            settle(m.as_user(u), &l, NOW + 20, &r, Actual::default()).unwrap();
        }
        for (_, _, reserved) in m.counts(Books::Tenant, "") {
            assert_eq!(reserved, 0);
        }
        assert!(m.lost.is_empty());
        assert!(admitted.values().sum::<u64>() <= tenant_requests * 2 + 1);
    }
}

#[test]
fn config_checks_name_the_path() {
    let raw = |json: &str| serde_json::from_str::<RawPerUser>(json).unwrap();
    let e = check(
        "plans.pro.per_user",
        &raw(r#"{"max_users": 0, "requests": [{"limit": 1, "window_s": 1}]}"#),
    )
    .unwrap_err();
    assert_eq!(e.path, "plans.pro.per_user.max_users");
    let e = check(
        "plans.pro.per_user",
        &raw(r#"{"tokens": [{"limit": 0, "window_s": 1}]}"#),
    )
    .unwrap_err();
    assert_eq!(e.path, "plans.pro.per_user.tokens[0].limit");
    let e = check("plans.pro.per_user", &raw(r#"{"max_users": 5}"#)).unwrap_err();
    assert_eq!(e.path, "plans.pro.per_user");
    let e = check("p.per_user", &raw(r#"{"monthly_budget_usd": -1}"#)).unwrap_err();
    assert_eq!(e.path, "p.per_user.monthly_budget_usd");
    assert!(serde_json::from_str::<RawPerUser>(r#"{"limit": 1}"#).is_err());
    let ok = raw(r#"{"requests": [{"limit": 3, "window_s": 60}], "monthly_budget_usd": 1.5}"#);
    check("p", &ok).unwrap();
    let compiled = finish(ok);
    assert_eq!(compiled.max_users, DEFAULT_MAX_USERS);
    assert_eq!(compiled.limits.monthly_budget_micro_usd, Some(1_500_000));
}
