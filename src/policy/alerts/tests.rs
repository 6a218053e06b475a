use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const THRESHOLDS: [u16; 3] = [500, 800, 1000];

fn tokens(slot: u64, used: u64) -> Usage {
    Usage {
        meter: Meter::Tokens(60),
        slot,
        period_start: slot * 60,
        limit: 1000,
        used,
    }
}

fn budget(slot: u64, used: u64) -> Usage {
    Usage {
        meter: Meter::Budget,
        slot,
        period_start: 1_764_547_200,
        limit: 10_000_000,
        used,
    }
}

fn thresholds_of(list: &[f64]) -> Result<Vec<u16>, ConfigError> {
    compile_thresholds("plans.pro.alerts", list)
}

#[test]
fn thresholds_are_fractions_in_permille_sorted_and_unique() {
    assert_eq!(thresholds_of(&[0.5, 0.8, 1.0]), Ok(vec![500, 800, 1000]));
    assert_eq!(thresholds_of(&[0.85, 0.95]), Ok(vec![850, 950]));
    assert_eq!(thresholds_of(&[]), Ok(vec![]));
    let error = |list: &[f64]| thresholds_of(list).unwrap_err();
    assert_eq!(error(&[0.0]).path, "plans.pro.alerts[0]");
    assert_eq!(error(&[0.5, 1.5]).path, "plans.pro.alerts[1]");
    assert!(error(&[-0.1]).message.contains("above 0"));
    assert!(error(&[f64::NAN]).message.contains("above 0"));
    assert!(error(&[0.8, 0.5]).message.contains("sorted"));
    assert!(error(&[0.8, 0.8]).message.contains("each once"));
    assert!(error(&[0.8001]).message.contains("three decimals"));
    assert!(error(&[0.1; 11]).message.contains("at most 10"));
}

#[test]
fn the_highest_threshold_reached_counts_real_usage_exactly() {
    assert_eq!(reached(&THRESHOLDS, &tokens(1, 499)), None);
    assert_eq!(reached(&THRESHOLDS, &tokens(1, 500)), Some(500));
    assert_eq!(reached(&THRESHOLDS, &tokens(1, 799)), Some(500));
    assert_eq!(reached(&THRESHOLDS, &tokens(1, 800)), Some(800));
    assert_eq!(reached(&THRESHOLDS, &tokens(1, 5000)), Some(1000));
    // No rounding up: 7_999_999 of 10_000_000 micro-USD is below 0.8.
    assert_eq!(reached(&THRESHOLDS, &budget(1, 7_999_999)), Some(500));
    assert_eq!(tokens(1, 1500).permille(), 1500);
    assert_eq!(
        Usage {
            used: u64::MAX,
            limit: 1,
            ..tokens(1, 0)
        }
        .permille(),
        u64::MAX
    );
}

#[test]
fn a_crossing_is_announced_once_per_window_and_period() {
    let (marks, first) = announce(&Marks::default(), &THRESHOLDS, &[tokens(7, 850)]);
    let announced: Vec<u16> = first.iter().map(|c| c.threshold).collect();
    assert_eq!(
        announced,
        [500, 800],
        "a jump announces every threshold passed"
    );
    // Stored and read back, as another worker would.
    let marks = Marks::decode(&marks.encode());
    let (marks, again) = announce(&marks, &THRESHOLDS, &[tokens(7, 900)]);
    assert!(again.is_empty());
    let (marks, full) = announce(&marks, &THRESHOLDS, &[tokens(7, 1000)]);
    assert_eq!(full.len(), 1);
    assert_eq!(full[0].threshold, 1000);
    // A new period starts over.
    let (_, next) = announce(&marks, &THRESHOLDS, &[tokens(8, 510)]);
    assert_eq!(next.iter().map(|c| c.threshold).collect::<Vec<_>>(), [500]);
}

#[test]
fn a_worker_with_an_older_clock_never_announces_a_period_again() {
    let (marks, _) = announce(&Marks::default(), &THRESHOLDS, &[tokens(8, 100)]);
    let (kept, old) = announce(&marks, &THRESHOLDS, &[tokens(7, 900)]);
    assert!(old.is_empty());
    assert_eq!(kept, marks);
}

#[test]
fn two_workers_racing_on_the_same_marks_announce_once() {
    // Both read the same marks; the first to write wins, the second re-reads (CAS) and finds
    // the threshold announced.
    let stored = Marks::default();
    let (a_marks, a) = announce(&stored, &THRESHOLDS, &[tokens(3, 810)]);
    let (_, b_first_try) = announce(&stored, &THRESHOLDS, &[tokens(3, 820)]);
    assert_eq!(a.len(), 2);
    assert_eq!(
        b_first_try.len(),
        2,
        "would announce, but its write loses the CAS"
    );
    let (_, b) = announce(&a_marks, &THRESHOLDS, &[tokens(3, 820)]);
    assert!(b.is_empty());
}

#[test]
fn windows_are_marked_separately_and_unlisted_ones_are_dropped() {
    let usages = [tokens(1, 800), budget(671, 5_000_000)];
    let (marks, crossings) = announce(&Marks::default(), &THRESHOLDS, &usages);
    assert_eq!(crossings.len(), 3);
    assert_eq!(marks.marks.len(), 2);
    let (marks, _) = announce(&marks, &THRESHOLDS, &[budget(671, 5_000_001)]);
    assert_eq!(marks.marks.len(), 1);
    // Below every threshold, the period is marked once; later settlements change nothing.
    let (marks, none) = announce(&Marks::default(), &THRESHOLDS, &[tokens(1, 10)]);
    assert!(none.is_empty());
    assert_eq!(marks.marks.len(), 1);
    let (same, _) = announce(&marks, &THRESHOLDS, &[tokens(1, 400)]);
    assert_eq!(same, marks);
}

#[test]
fn unreadable_marks_count_as_none() {
    assert_eq!(Marks::decode(&[]), Marks::default());
    assert_eq!(Marks::decode(&[9, 1, 2]), Marks::default());
    let (marks, _) = announce(&Marks::default(), &THRESHOLDS, &[tokens(1, 900)]);
    let mut bytes = marks.encode();
    bytes.push(0xff);
    assert_eq!(Marks::decode(&bytes), marks, "a torn tail is ignored");
}

#[test]
fn the_event_names_tenant_window_threshold_used_limit_and_period() {
    let crossing = Crossing {
        usage: budget(671, 8_000_000),
        threshold: 800,
    };
    let event = Event::new(&crossing, "acme", "ab12", "T".into(), |ms| format!("{ms}"));
    let text = serde_json::to_string(&event).unwrap();
    assert_eq!(
        text,
        r#"{"time":"T","event":"budget_threshold","tenant":"acme","window":"budget","threshold":0.8,"used":8000000,"limit":10000000,"unit":"micro_usd","period_start":"1764547200000","request_id":"ab12"}"#
    );
    let window = Event::new(
        &Crossing {
            usage: tokens(2, 1000),
            threshold: 1000,
        },
        "acme",
        "ab12",
        "T".into(),
        |ms| format!("{ms}"),
    );
    let value: serde_json::Value = serde_json::from_slice(&window.webhook_body()).unwrap();
    assert_eq!(value["window"], "tokens_60s");
    assert_eq!(value["threshold"], 1);
    assert_eq!(value["unit"], "tokens");
    assert_eq!(value["period_start"], "120000");
    for (permille, text) in [(500, "0.5"), (850, "0.85"), (1, "0.001"), (999, "0.999")] {
        assert_eq!(serde_json::to_string(&Fraction(permille)).unwrap(), text);
    }
}

fn webhook(value: serde_json::Value) -> Result<Option<Webhook>, ConfigError> {
    compile_alerts(serde_json::from_value(value).unwrap())
}

#[test]
fn the_webhook_is_checked_with_field_paths() {
    let ok = webhook(serde_json::json!({"webhook": {"cluster": "hooks", "path": "/alerts"}}))
        .unwrap()
        .unwrap();
    assert_eq!(ok.authority, "hooks");
    assert_eq!((ok.timeout_ms, ok.retries), (1000, 2));
    assert_eq!(webhook(serde_json::json!({})), Ok(None));
    let path_of = |v| webhook(v).unwrap_err().path;
    assert_eq!(
        path_of(serde_json::json!({"webhook": {"cluster": "", "path": "/a"}})),
        "alerts.webhook.cluster"
    );
    assert_eq!(
        path_of(serde_json::json!({"webhook": {"cluster": "h", "path": "a"}})),
        "alerts.webhook.path"
    );
    assert_eq!(
        path_of(serde_json::json!({"webhook": {"cluster": "h", "path": "/a", "timeout_ms": 0}})),
        "alerts.webhook.timeout_ms"
    );
    assert_eq!(
        path_of(serde_json::json!({"webhook": {"cluster": "h", "path": "/a", "retries": 6}})),
        "alerts.webhook.retries"
    );
    assert!(serde_json::from_value::<RawAlerts>(
        serde_json::json!({"webhook": {"cluster": "h", "path": "/a", "url": "x"}})
    )
    .is_err());
}

fn body(n: u8) -> Vec<u8> {
    vec![n]
}

#[test]
fn the_outbox_is_bounded_and_drops_the_oldest() {
    let mut outbox = Outbox::new(2);
    for n in 0..5 {
        outbox.push_body(body(n), 0);
    }
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox.take_dropped(), 3);
    assert_eq!(outbox.take_dropped(), 0);
    assert_eq!(outbox.take_due(0).unwrap().body, body(3));
    assert_eq!(outbox.take_due(0).unwrap().body, body(4));
    assert!(outbox.take_due(0).is_none());
}

#[test]
fn a_failed_delivery_is_retried_after_a_back_off_a_bounded_number_of_times() {
    let mut outbox = Outbox::default();
    outbox.push_body(body(1), 1000);
    let mut attempts = 0;
    let mut now = 1000;
    while let Some(d) = outbox.take_due(now) {
        attempts += 1;
        outbox.failed(d, 2, now);
        assert!(outbox.take_due(now).is_none(), "not before its back-off");
        now += 10_000;
    }
    assert_eq!(attempts, 3, "the first try and two retries");
    assert_eq!(outbox.take_dropped(), 1);
    assert!(outbox.is_empty());
    assert_eq!(
        [1, 2, 3, 10].map(backoff_ms),
        [200, 400, 800, 5000],
        "doubling, capped"
    );
}

#[test]
fn only_a_2xx_answer_is_a_delivery() {
    assert!(delivered(Some("200")));
    assert!(delivered(Some("204")));
    assert!(!delivered(Some("500")));
    assert!(!delivered(Some("2")));
    assert!(!delivered(None));
}
