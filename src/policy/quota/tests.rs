use super::*;
use crate::policy::plan::Window as Plan;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;

fn limits(requests: &[(u64, u64)], tokens: &[(u64, u64)], budget: Option<u64>) -> Limits {
    let plan = |w: &[(u64, u64)]| {
        w.iter()
            .map(|&(limit, window_s)| Plan { limit, window_s })
            .collect()
    };
    Limits {
        requests: plan(requests),
        tokens: plan(tokens),
        monthly_budget_micro_usd: budget,
        enforcement: Default::default(),
        output_cap: None,
        models: None,
    }
}

fn demand(tokens: u64) -> Demand {
    Demand {
        tokens,
        micro_usd: 0,
    }
}

/// Admits sequential requests, each settled with `used` tokens, until one is refused.
fn admitted_in_a_row(limits: &Limits, estimate: u64, used: u64) -> (u64, Refusal) {
    let mut state = QuotaState::default();
    for n in 0.. {
        match admit(&state, limits, NOW, demand(estimate)) {
            Ok(a) => {
                let actual = Actual {
                    tokens: used,
                    micro_usd: 0,
                };
                state = settle(&a.state, limits, NOW, &a.reservation, actual);
            }
            Err(refusal) => return (n, refusal),
        }
    }
    unreachable!()
}

#[test]
fn request_window_admits_exactly_its_limit() {
    let (n, refusal) = admitted_in_a_row(&limits(&[(5, 60)], &[], None), 0, 0);
    assert_eq!(n, 5);
    assert_eq!(refusal.reason, Reason::RequestQuotaExceeded);
    // NOW is 20 s into its minute.
    assert_eq!(refusal.retry_after, 40);
}

#[test]
fn every_window_must_hold_and_a_refusal_charges_none() {
    let l = limits(&[(100, 60), (2, 1)], &[], None);
    let mut state = QuotaState::default();
    for _ in 0..2 {
        state = admit(&state, &l, NOW, demand(0)).unwrap().state;
    }
    let refusal = admit(&state, &l, NOW, demand(0)).unwrap_err();
    assert_eq!(refusal.retry_after, 1);
    let minute = refusal.windows.iter().find(|w| w.window_s == 60).unwrap();
    assert_eq!(minute.remaining, 98, "the refused request was not counted");
    // The 1 s window frees a second later; the minute window still has room.
    assert!(admit(&state, &l, NOW + 1, demand(0)).is_ok());
}

#[test]
fn retry_after_waits_for_the_last_full_window_to_reset() {
    // Both request windows are full: the second frees after 1 s, the minute after 40 s.
    // Retrying after 1 s could only be refused again.
    let l = limits(&[(1, 1), (1, 60)], &[], None);
    let state = admit(&QuotaState::default(), &l, NOW, demand(0))
        .unwrap()
        .state;
    let refusal = admit(&state, &l, NOW, demand(0)).unwrap_err();
    assert_eq!(refusal.reason, Reason::RequestQuotaExceeded);
    assert_eq!(refusal.retry_after, 40);
    assert!(admit(&state, &l, NOW + 39, demand(0)).is_err());
    assert!(admit(&state, &l, NOW + 40, demand(0)).is_ok());
}

#[test]
fn retry_after_spans_kinds_and_the_reason_is_the_first_full_window() {
    // A full 1 s request window and a full daily token window: the reason names the requests
    // (checked first), the wait is the day's.
    let l = limits(&[(1, 1)], &[(10, 86_400)], None);
    let a = admit(&QuotaState::default(), &l, NOW, demand(10)).unwrap();
    let refusal = admit(&a.state, &l, NOW, demand(0)).unwrap_err();
    assert_eq!(refusal.reason, Reason::RequestQuotaExceeded);
    let midnight = (NOW / 86_400 + 1) * 86_400;
    assert_eq!(refusal.retry_after, midnight - NOW);
    // Only the token window full (the request second has passed): its reset as before.
    let refusal = admit(&a.state, &l, NOW + 1, demand(0)).unwrap_err();
    assert_eq!(refusal.reason, Reason::TokenQuotaExceeded);
    assert_eq!(refusal.retry_after, midnight - NOW - 1);
}

#[test]
fn windows_are_aligned_to_the_epoch() {
    let l = limits(&[(1, 86_400)], &[], None);
    let state = admit(&QuotaState::default(), &l, NOW, demand(0))
        .unwrap()
        .state;
    let refusal = admit(&state, &l, NOW, demand(0)).unwrap_err();
    let midnight = (NOW / 86_400 + 1) * 86_400;
    assert_eq!(refusal.retry_after, midnight - NOW);
    assert!(admit(&state, &l, midnight, demand(0)).is_ok());
    let last_second = admit(&state, &l, midnight - 1, demand(0)).unwrap_err();
    assert_eq!(
        (last_second.reason, last_second.retry_after),
        (Reason::RequestQuotaExceeded, 1)
    );
}

#[test]
fn sequential_token_use_fills_the_window_and_the_crossing_request_is_the_last() {
    // Estimates of 100 but each request really uses 300: admitted at 0, 300, 600, 900.
    let (n, refusal) = admitted_in_a_row(&limits(&[], &[(1000, 60)], None), 100, 300);
    assert_eq!(n, 4);
    assert_eq!(refusal.reason, Reason::TokenQuotaExceeded);
}

#[test]
fn reservations_stop_concurrent_requests_piling_in() {
    // Nothing settled yet: each admission holds its estimate.
    let l = limits(&[], &[(1000, 60)], None);
    let mut state = QuotaState::default();
    let mut admitted = 0;
    while let Ok(a) = admit(&state, &l, NOW, demand(400)) {
        state = a.state;
        admitted += 1;
    }
    assert_eq!(admitted, 3, "0, 400, 800 are below 1000; 1200 is not");
}

#[test]
fn settling_replaces_the_estimate_by_the_real_usage() {
    let l = limits(&[], &[(1000, 60)], None);
    let a = admit(&QuotaState::default(), &l, NOW, demand(400)).unwrap();
    assert_eq!(
        a.windows[0].remaining, 1000,
        "its own estimate is not reported as spent"
    );
    let peek = admit(&a.state, &l, NOW, demand(0)).unwrap();
    assert_eq!(peek.windows[0].remaining, 600, "but it is held");
    let actual = Actual {
        tokens: 50,
        micro_usd: 0,
    };
    let settled = settle(&a.state, &l, NOW, &a.reservation, actual);
    let next = admit(&settled, &l, NOW, demand(0)).unwrap();
    assert_eq!(next.windows[0].remaining, 950);
}

#[test]
fn a_reservation_from_a_past_slot_is_not_taken_from_the_new_one() {
    let l = limits(&[], &[(1000, 60)], None);
    let a = admit(&QuotaState::default(), &l, NOW, demand(400)).unwrap();
    // Another request in the next minute reserves 300; then the old one settles with 100.
    let later = NOW + 60;
    let b = admit(&a.state, &l, later, demand(300)).unwrap();
    let actual = Actual {
        tokens: 100,
        micro_usd: 0,
    };
    let settled = settle(&b.state, &l, later, &a.reservation, actual);
    let status = admit(&settled, &l, later, demand(0)).unwrap().windows[0];
    assert_eq!(status.remaining, 1000 - 300 - 100);
}

#[test]
fn budget_is_per_calendar_month_utc() {
    let l = limits(&[], &[], Some(1_000));
    let spend = |state: &QuotaState, at: u64, micro_usd: u64| {
        let d = Demand {
            tokens: 0,
            micro_usd,
        };
        let a = admit(state, &l, at, d).unwrap();
        let actual = Actual {
            tokens: 0,
            micro_usd,
        };
        settle(&a.state, &l, at, &a.reservation, actual)
    };
    let state = spend(&QuotaState::default(), NOW, 1_000);
    let refusal = admit(&state, &l, NOW, Demand::default()).unwrap_err();
    assert_eq!(refusal.reason, Reason::BudgetExceeded);
    // NOW is in November 2023; December starts at 1701388800.
    assert_eq!(refusal.retry_after, 1_701_388_800 - NOW);
    assert!(admit(&state, &l, 1_701_388_800, Demand::default()).is_ok());
}

#[test]
fn months_end_where_the_calendar_says() {
    // (instant, end of its month)
    let cases = [
        (0, 2_678_400),                 // 1970-01 → 1970-02-01
        (951_782_400, 951_868_800),     // 2000-02-29 → 2000-03-01 (leap year)
        (1_703_980_800, 1_704_067_200), // 2023-12-31 → 2024-01-01
        (1_704_067_199, 1_704_067_200), // last second of 2023
    ];
    for (at, end) in cases {
        assert_eq!(month(at).1, end, "{at}");
    }
    assert_ne!(month(1_704_067_199).0, month(1_704_067_200).0);
}

#[test]
fn state_survives_encoding_and_garbage_reads_as_fresh() {
    let l = limits(&[(5, 60)], &[(100, 3600)], Some(7));
    let a = admit(&QuotaState::default(), &l, NOW, demand(10)).unwrap();
    let bytes = a.state.encode();
    assert_eq!(bytes.len(), 1 + 3 * 33);
    assert_eq!(QuotaState::decode(&bytes), a.state);
    for garbage in [
        &b""[..],
        b"\x00",
        b"\x01\x09",
        &[1u8; 40][..],
        &[0xff; 67][..],
    ] {
        // Never a panic; unknown tags and short tails are dropped.
        let _ = admit(&QuotaState::decode(garbage), &l, NOW, demand(1)).unwrap();
    }
}

#[test]
fn windows_no_longer_configured_are_dropped() {
    let old = limits(&[(5, 60)], &[], None);
    let new = limits(&[(10, 1)], &[], None);
    let a = admit(&QuotaState::default(), &old, NOW, demand(0)).unwrap();
    let b = admit(&a.state, &new, NOW, demand(0)).unwrap();
    assert_eq!(b.state.encode().len(), 1 + 33);
}

#[test]
fn no_limits_admit_everything() {
    let a = admit(
        &QuotaState::default(),
        &Limits::default(),
        NOW,
        demand(1_000_000),
    )
    .unwrap();
    assert!(a.windows.is_empty());
    assert!(rate_limit_headers(&a.windows).is_empty());
}

#[test]
fn headers_follow_the_ietf_draft_and_openai_names() {
    let l = limits(&[(600, 60), (20, 1)], &[(2_000_000, 86_400)], Some(5));
    let a = admit(&QuotaState::default(), &l, NOW, demand(1000)).unwrap();
    let headers = rate_limit_headers(&a.windows);
    assert_eq!(
        headers,
        vec![
            (
                "ratelimit-policy",
                "\"requests-60s\";q=600;w=60, \"requests-1s\";q=20;w=1, \
                 \"tokens-86400s\";q=2000000;w=86400"
                    .to_string()
            ),
            (
                "ratelimit",
                "\"requests-60s\";r=599;t=40, \"requests-1s\";r=19;t=1, \
                 \"tokens-86400s\";r=2000000;t=6400"
                    .to_string()
            ),
        ]
    );
    assert_eq!(
        remaining_headers(&a.windows),
        vec![
            ("x-ratelimit-remaining-requests", "19".to_string()),
            ("x-ratelimit-remaining-tokens", "2000000".to_string())
        ]
    );
}

#[test]
fn the_body_estimate_replaces_the_provisional_reservation_until_settled() {
    let l = limits(&[(10, 60)], &[(1000, 60)], None);
    let admitted = admit(&QuotaState::default(), &l, NOW, demand(300)).unwrap();
    let peek = admit(&admitted.state, &l, NOW, Demand::default()).unwrap();
    assert_eq!(
        peek.windows[1].remaining, 700,
        "provisional estimate held at once"
    );
    let (state, reservation) =
        reserve(&admitted.state, &l, NOW, &admitted.reservation, demand(700));
    let peek = admit(&state, &l, NOW, Demand::default()).unwrap();
    assert_eq!(peek.windows[1].remaining, 300);
    assert_eq!(peek.windows[0].remaining, 8, "reserve counts no request");
    let actual = Actual {
        tokens: 10,
        micro_usd: 0,
    };
    let settled = settle(&state, &l, NOW, &reservation, actual);
    let after = admit(&settled, &l, NOW, Demand::default()).unwrap();
    assert_eq!(after.windows[1].remaining, 990);
}
