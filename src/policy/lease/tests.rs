use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const T0: u64 = 1_700_000_000_000;

fn rules() -> LeaseRules {
    LeaseRules {
        window_ms: 60_000,
        block_ms: 5_000,
        low_water_permille: 500,
        requests: Blocks { min: 4, max: 100 },
        tokens: Blocks {
            min: 1000,
            max: 100_000,
        },
        stale_ms: 2_000,
    }
}

fn ok() -> Answer {
    Answer {
        verdict: Verdict::Ok,
        reset_after: None,
        limit_remaining: None,
        response_headers: vec![],
    }
}

fn over_limit() -> Answer {
    Answer {
        verdict: Verdict::OverLimit,
        ..ok()
    }
}

/// A Limitador-like counter: a hit that would cross the limit is refused and counts nothing.
struct Service {
    counter: u64,
    limit: u64,
    calls: u32,
    up: bool,
}

impl Service {
    fn new(limit: u64) -> Service {
        Service {
            counter: 0,
            limit,
            calls: 0,
            up: true,
        }
    }

    fn call(&mut self, hits: u64) -> Option<Answer> {
        self.calls += 1;
        if !self.up {
            return None;
        }
        if self.counter + hits > self.limit {
            Some(over_limit())
        } else {
            self.counter += hits;
            Some(ok())
        }
    }
}

/// Runs a fetch to its end against the service.
fn run(credit: Credit, mut fetch: Fetch, service: &mut Service, now: u64) -> (Credit, Ended) {
    let mut credit = credit;
    loop {
        let answer = service.call(fetch.hits());
        let (next, step) = answered(&credit, &fetch, answer.as_ref(), &rules(), now);
        credit = next;
        match step {
            Step::Again(f) => fetch = f,
            Step::Done(ended) => return (credit, ended),
        }
    }
}

/// One replica admitting a request of `need` units: takes, and runs whatever fetch the take
/// asked for at once (a refill's grant lands before the next request). True when admitted.
fn admit(credit: &mut Credit, service: &mut Service, need: u64, now: u64) -> bool {
    let (next, take) = take(credit, &rules(), Usage::Requests, need, now);
    *credit = next;
    match take {
        Take::Covered { refill, .. } => {
            if let Some(fetch) = refill {
                *credit = run(*credit, fetch, service, now).0;
            }
            true
        }
        Take::Fetch(fetch) | Take::Ask(fetch) => {
            let (next, ended) = run(*credit, fetch, service, now);
            *credit = next;
            matches!(ended, Ended::Admitted { .. })
        }
        Take::Exhausted { .. } => false,
        Take::Unavailable { probe } => {
            if let Some(fetch) = probe {
                *credit = run(*credit, fetch, service, now).0;
            }
            false
        }
    }
}

#[test]
fn the_first_request_fetches_a_block_and_keeps_the_rest_as_credit() {
    let (credit, take) = take(&Credit::default(), &rules(), Usage::Requests, 1, T0);
    let Take::Fetch(fetch) = take else {
        panic!("{take:?}")
    };
    assert_eq!(fetch.hits(), 4, "the smallest block");
    let (credit, step) = answered(&credit, &fetch, Some(&ok()), &rules(), T0 + 3);
    assert_eq!(step, Step::Done(Ended::Admitted { generation: 0 }));
    assert_eq!(credit.balance, 3);
    assert_eq!(credit.fetching_since_ms, 0, "the claim is released");
    assert_eq!(
        credit.expires_at_ms,
        T0 + 3 + 60_000,
        "the configured window"
    );
}

#[test]
fn held_credit_admits_without_calls_and_claims_one_refill_under_low_water() {
    let credit = Credit {
        balance: 10,
        block: 10,
        expires_at_ms: T0 + 60_000,
        rate_since_ms: T0,
        ..Credit::default()
    };
    let (credit, first) = take(&credit, &rules(), Usage::Requests, 1, T0 + 10);
    assert_eq!(
        first,
        Take::Covered {
            generation: 0,
            refill: None
        }
    );
    let mut credit = credit;
    let mut refills = Vec::new();
    for _ in 0..8 {
        let (next, take) = take(&credit, &rules(), Usage::Requests, 1, T0 + 20);
        credit = next;
        match take {
            Take::Covered {
                refill: Some(f), ..
            } => refills.push(f),
            Take::Covered { refill: None, .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(credit.balance, 1);
    assert_eq!(
        refills.len(),
        1,
        "one claim while it is on its way: {refills:?}"
    );
    assert!(refills[0].hits() >= 4);
}

#[test]
fn while_a_block_is_on_its_way_requests_without_credit_ask_for_their_need() {
    let (credit, take1) = take(&Credit::default(), &rules(), Usage::Tokens, 300, T0);
    assert!(matches!(take1, Take::Fetch(f) if f.hits() == 1000));
    let (credit, take2) = take(&credit, &rules(), Usage::Tokens, 250, T0 + 1);
    let Take::Ask(ask) = take2 else {
        panic!("{take2:?}")
    };
    assert_eq!(ask.hits(), 250);
    // Granted: admitted, nothing else held back, the claim stays with the block's fetch.
    let (after, step) = answered(&credit, &ask, Some(&ok()), &rules(), T0 + 2);
    assert_eq!(step, Step::Done(Ended::Admitted { generation: 0 }));
    assert_eq!(after.balance, 0);
    assert_eq!(after.fetching_since_ms, T0);
    // Refused (more than is left): only this request is refused, nothing is exhausted.
    let (after, step) = answered(&credit, &ask, Some(&over_limit()), &rules(), T0 + 2);
    assert_eq!(step, Step::Done(Ended::Refused { retry_after_s: 1 }));
    assert_eq!(after.exhausted_until_ms, 0);
}

#[test]
fn a_waiting_request_takes_its_need_from_its_own_grant_despite_new_debt() {
    let (credit, take) = take(&Credit::default(), &rules(), Usage::Tokens, 300, T0);
    let Take::Fetch(fetch) = take else {
        panic!("{take:?}")
    };
    // Requests in flight used far more than their estimates while the block was on its way.
    let indebted = settle(&credit, Some(0), 0, 5000, T0 + 1);
    let (after, step) = answered(&indebted, &fetch, Some(&ok()), &rules(), T0 + 2);
    assert_eq!(step, Step::Done(Ended::Admitted { generation: 0 }));
    assert_eq!(
        after.balance,
        -5000 + 1000 - 300,
        "the debt stays for the next block"
    );
    // A halved grant smaller than the need asks for the rest.
    let halved = Fetch { step: 100, ..fetch };
    let (after, step) = answered(&credit, &halved, Some(&ok()), &rules(), T0 + 2);
    assert!(
        matches!(step, Step::Again(f) if f.hits() == 200),
        "{step:?}"
    );
    assert_eq!(after.balance, 100);
}

#[test]
fn a_refused_block_is_halved_down_to_one_then_the_tenant_is_exhausted() {
    let mut service = Service::new(7);
    let (credit, take) = take(&Credit::default(), &rules(), Usage::Requests, 1, T0);
    let Take::Fetch(fetch) = take else {
        panic!("{take:?}")
    };
    // Block 4 fits, the rest is driven to exactly the limit by later blocks.
    let (mut credit, ended) = run(credit, fetch, &mut service, T0);
    assert_eq!(ended, Ended::Admitted { generation: 0 });
    let mut admitted = 1;
    let mut now = T0;
    for _ in 0..20 {
        now += 10;
        if admit(&mut credit, &mut service, 1, now) {
            admitted += 1;
        }
    }
    assert_eq!(service.counter, 7, "the counter is driven to the limit");
    assert_eq!(admitted, 7, "every unit counted is spent, none more");
    assert!(credit.exhausted_until_ms > now);
    let calls = service.calls;
    let (_, take) = super::take(&credit, &rules(), Usage::Requests, 1, now + 1);
    assert_eq!(take, Take::Exhausted { retry_after_s: 1 });
    assert_eq!(service.calls, calls, "refused without a call");
}

#[test]
fn after_exhaustion_one_request_probes_with_its_own_need() {
    let credit = Credit {
        exhausted_until_ms: T0,
        block: 50,
        ..Credit::default()
    };
    let (credit, take) = take(&credit, &rules(), Usage::Requests, 1, T0 + 5);
    let Take::Fetch(probe) = take else {
        panic!("{take:?}")
    };
    assert_eq!(probe.hits(), 1);
    // Still exhausted: refused again, for another while.
    let (after, step) = answered(&credit, &probe, Some(&over_limit()), &rules(), T0 + 6);
    assert_eq!(step, Step::Done(Ended::Refused { retry_after_s: 1 }));
    assert_eq!(after.exhausted_until_ms, T0 + 6 + RETRY_MS);
    // A new window: admitted, and blocks are fetched ahead of need again.
    let (after, step) = answered(&credit, &probe, Some(&ok()), &rules(), T0 + 6);
    assert_eq!(step, Step::Done(Ended::Admitted { generation: 0 }));
    assert_eq!(after.exhausted_until_ms, 0);
    let (_, take) = super::take(&after, &rules(), Usage::Requests, 1, T0 + 7);
    assert!(matches!(take, Take::Fetch(f) if f.hits() >= 4), "{take:?}");
}

#[test]
fn a_refusal_the_service_counted_exhausts_at_once_until_its_reset() {
    let (credit, take) = take(&Credit::default(), &rules(), Usage::Requests, 1, T0);
    let Take::Fetch(fetch) = take else {
        panic!("{take:?}")
    };
    let counted = Answer {
        limit_remaining: Some(0),
        reset_after: Some(42),
        ..over_limit()
    };
    let (credit, step) = answered(&credit, &fetch, Some(&counted), &rules(), T0);
    assert_eq!(step, Step::Done(Ended::Refused { retry_after_s: 42 }));
    assert_eq!(credit.exhausted_until_ms, T0 + 42_000);
    assert_eq!(credit.balance, 0, "nothing over the limit is spent");
}

#[test]
fn credit_lapses_at_the_services_reset_or_the_configured_window() {
    let (credit, take) = take(&Credit::default(), &rules(), Usage::Requests, 1, T0);
    let Take::Fetch(fetch) = take else {
        panic!("{take:?}")
    };
    let with_reset = Answer {
        reset_after: Some(10),
        ..ok()
    };
    let (credit, _) = answered(&credit, &fetch, Some(&with_reset), &rules(), T0);
    assert_eq!(credit.expires_at_ms, T0 + 10_000);
    assert_eq!(credit.balance, 3);
    let (after, take) = super::take(&credit, &rules(), Usage::Requests, 1, T0 + 10_000);
    assert!(matches!(take, Take::Fetch(_)), "{take:?}");
    assert_eq!(after.generation, 1);
    assert_eq!(after.balance, 0, "the old window's credit is gone");
}

#[test]
fn tokens_settle_what_the_estimate_missed_into_the_same_credit_only() {
    let credit = Credit {
        balance: 5000,
        block: 5000,
        expires_at_ms: T0 + 60_000,
        rate_since_ms: T0,
        ..Credit::default()
    };
    let (credit, take) = take(&credit, &rules(), Usage::Tokens, 1200, T0);
    assert!(matches!(take, Take::Covered { generation: 0, .. }));
    assert_eq!(credit.balance, 3800);
    assert_eq!(settle(&credit, Some(0), 1200, 700, T0).balance, 4300);
    assert_eq!(
        settle(&credit, Some(0), 1200, 5500, T0).spent,
        1200 + 4300,
        "the rate counts real use"
    );
    let over = settle(&credit, Some(0), 1200, 5500, T0);
    assert_eq!(over.balance, -500, "a debt");
    assert_eq!(
        settle(&credit, Some(0), 1200, 700, T0 + 60_000),
        Credit {
            balance: 0,
            expires_at_ms: 0,
            generation: 1,
            spent: 700,
            ..credit
        },
        "the window ended: nothing goes into the next one"
    );
    assert_eq!(
        settle(&credit, None, 0, 300, T0).balance,
        3500,
        "unreserved use"
    );
    // The next block pays the debt on top of its size.
    let (_, take) = super::take(&over, &rules(), Usage::Tokens, 100, T0 + 1);
    let Take::Fetch(fetch) = take else {
        panic!("{take:?}")
    };
    assert!(fetch.hits() >= 1000 + 500, "{}", fetch.hits());
}

#[test]
fn block_size_follows_the_tenants_rate_within_its_bounds() {
    let mut credit = Credit {
        balance: 2,
        block: 4,
        expires_at_ms: T0 + 60_000,
        rate_since_ms: T0,
        spent: 39,
        ..Credit::default()
    };
    // 40 requests in 2 s: 20/s; 5 s of it is 100 (the largest block).
    let (next, take) = take(&credit, &rules(), Usage::Requests, 1, T0 + 2_000);
    let Take::Covered {
        refill: Some(f), ..
    } = take
    else {
        panic!("{take:?}")
    };
    assert_eq!(f.hits(), 100);
    assert_eq!((next.spent, next.rate_since_ms), (0, T0 + 2_000));
    // 3 requests in 30 s: 0.1/s; half a request: the smallest block.
    credit.spent = 2;
    let (_, take) = super::take(&credit, &rules(), Usage::Requests, 1, T0 + 30_000);
    assert!(matches!(take, Take::Covered { refill: Some(f), .. } if f.hits() == 4));
    // 12 in 3 s: 4/s, 20.
    credit.spent = 11;
    let (_, take) = super::take(&credit, &rules(), Usage::Requests, 1, T0 + 3_000);
    assert!(matches!(take, Take::Covered { refill: Some(f), .. } if f.hits() == 20));
}

#[test]
fn during_an_outage_held_credit_is_spent_then_requests_fail_without_calls() {
    let mut service = Service::new(1_000_000);
    let mut credit = Credit::default();
    assert!(admit(&mut credit, &mut service, 1, T0));
    assert_eq!(credit.balance, 3);
    service.up = false;
    let mut admitted = 0;
    let mut outcomes = Vec::new();
    for i in 0..10 {
        let (next, take) = take(&credit, &rules(), Usage::Requests, 1, T0 + 10 + i);
        credit = next;
        match take {
            Take::Covered { refill, .. } => {
                admitted += 1;
                if let Some(f) = refill {
                    credit = run(credit, f, &mut service, T0 + 10 + i).0;
                }
            }
            other => outcomes.push(other),
        }
    }
    assert_eq!(admitted, 3, "the held credit, no more");
    assert!(credit.failing);
    assert!(
        outcomes
            .iter()
            .all(|o| *o == Take::Unavailable { probe: None }),
        "{outcomes:?}"
    );
    let calls = service.calls;
    // A second later one request claims a probe for the root; it finds the service back.
    service.up = true;
    let (next, take) = take(&credit, &rules(), Usage::Requests, 1, T0 + 2_000);
    let Take::Unavailable { probe: Some(probe) } = take else {
        panic!("{take:?}")
    };
    let (next, ended) = run(next, probe, &mut service, T0 + 2_000);
    assert_eq!(ended, Ended::Granted);
    assert_eq!(service.calls, calls + 1);
    assert!(!next.failing);
    let (_, take) = super::take(&next, &rules(), Usage::Requests, 1, T0 + 2_001);
    assert!(matches!(take, Take::Covered { .. }), "{take:?}");
}

#[test]
fn a_fetch_not_heard_of_is_taken_over() {
    let (credit, _) = take(&Credit::default(), &rules(), Usage::Requests, 1, T0);
    let (_, take) = super::take(&credit, &rules(), Usage::Requests, 1, T0 + 1_999);
    assert!(matches!(take, Take::Ask(_)));
    let (_, take) = super::take(&credit, &rules(), Usage::Requests, 1, T0 + 2_000);
    assert!(matches!(take, Take::Fetch(_)), "{take:?}");
}

#[test]
fn replicas_sharing_one_service_never_admit_more_than_the_limit() {
    for limit in [1, 7, 100, 333] {
        let mut service = Service::new(limit);
        let mut replicas = [Credit::default(); 3];
        let mut admitted = 0;
        for i in 0..1000u64 {
            let replica = &mut replicas[(i % 3) as usize];
            if admit(replica, &mut service, 1, T0 + i) {
                admitted += 1;
            }
        }
        assert_eq!(service.counter, limit);
        assert_eq!(admitted, limit, "every counted unit spent, none more");
        assert!(
            u64::from(service.calls) < 200,
            "{} calls for {limit}",
            service.calls
        );
    }
}

#[test]
fn state_round_trips_and_anything_else_is_no_credit() {
    let state = LeaseState {
        requests: Credit {
            balance: -5,
            expires_at_ms: 1,
            generation: 2,
            block: 3,
            spent: 4,
            rate_since_ms: 5,
            fetching_since_ms: 6,
            exhausted_until_ms: 7,
            failing: true,
            retry_at_ms: 8,
        },
        tokens: Credit {
            balance: i64::MAX,
            ..Credit::default()
        },
    };
    assert_eq!(LeaseState::decode(&state.encode()), state);
    for garbage in [&b""[..], b"\x01", b"\x02abc", &state.encode()[..20]] {
        assert_eq!(LeaseState::decode(garbage), LeaseState::default());
    }
}

/// Replicas whose requests and calls interleave in a pseudo-random order (calls in flight
/// while others take credit): nothing is admitted that the service did not count.
#[test]
fn interleaved_replicas_admit_only_what_the_service_counted() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut random = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for limit in [5, 64, 500] {
        let mut service = Service::new(limit);
        let mut credits = [Credit::default(); 2];
        // In flight: (replica, fetch).
        let mut calls: Vec<(usize, Fetch)> = Vec::new();
        let (mut admitted, mut refused) = (0u64, 0u64);
        let mut now = T0;
        for _ in 0..5000 {
            now += random(3);
            if calls.is_empty() || random(2) == 0 {
                let replica = random(2) as usize;
                let (next, take) = take(&credits[replica], &rules(), Usage::Requests, 1, now);
                credits[replica] = next;
                match take {
                    Take::Covered { refill, .. } => {
                        admitted += 1;
                        calls.extend(refill.map(|f| (replica, f)));
                    }
                    Take::Fetch(f) | Take::Ask(f) => calls.push((replica, f)),
                    Take::Exhausted { .. } | Take::Unavailable { .. } => refused += 1,
                }
            } else {
                let (replica, fetch) = calls.swap_remove(random(calls.len() as u64) as usize);
                let answer = service.call(fetch.hits());
                let (next, step) =
                    answered(&credits[replica], &fetch, answer.as_ref(), &rules(), now);
                credits[replica] = next;
                match step {
                    Step::Again(f) => calls.push((replica, f)),
                    Step::Done(Ended::Admitted { .. }) => admitted += 1,
                    Step::Done(Ended::Refused { .. }) => refused += 1,
                    Step::Done(_) => {}
                }
            }
            let held: i64 = credits.iter().map(|c| c.balance).sum();
            assert!(held >= 0);
            assert_eq!(
                admitted + held as u64,
                service.counter,
                "every counted unit is spent or held"
            );
            assert!(service.counter <= limit);
        }
        assert!(refused > 0);
        assert_eq!(service.counter, limit, "driven to the limit");
        let held: i64 = credits.iter().map(|c| c.balance).sum();
        assert!(
            held <= 2 * 100,
            "at most a block per replica unspent: {held}"
        );
    }
}
