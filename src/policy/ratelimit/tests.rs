use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Decodes a message into (field, raw value) pairs, for asserting on what was encoded.
fn fields(bytes: &[u8]) -> Vec<(u64, Vec<u8>, Option<u64>)> {
    Fields::new(bytes)
        .map(|f| match f.unwrap() {
            (n, Wire::Bytes(b)) => (n, b.to_vec(), None),
            (n, Wire::Varint(v)) => (n, Vec::new(), Some(v)),
            (n, Wire::Fixed64(_) | Wire::Fixed32) => (n, Vec::new(), None),
        })
        .collect()
}

fn subject() -> Subject<'static> {
    Subject {
        plan: Some("pro"),
        tenant: "acme",
        user: Some("alice"),
        model: None,
    }
}

#[test]
fn entries_follow_the_contract_order_with_optional_extras() {
    assert_eq!(
        entries(&[], Quota::tenant(Usage::Requests), &subject()),
        vec![
            ("usage", "requests"),
            ("plan", "pro"),
            ("tenant_id", "acme")
        ]
    );
    let with_extras = [ExtraEntry::UserId, ExtraEntry::Model];
    assert_eq!(
        entries(&with_extras, Quota::tenant(Usage::Tokens), &subject()),
        vec![
            ("usage", "tokens"),
            ("plan", "pro"),
            ("tenant_id", "acme"),
            ("user_id", "alice"),
            ("model", "unknown")
        ]
    );
}

#[test]
fn a_users_quota_is_a_descriptor_of_its_own_with_the_user_after_the_tenant() {
    let user_requests = Quota::user(Usage::Requests);
    assert_eq!(
        entries(&[], user_requests, &subject()),
        vec![
            ("usage", "user_requests"),
            ("plan", "pro"),
            ("tenant_id", "acme"),
            ("user_id", "alice")
        ]
    );
    // `user_id` among the extra entries is not sent twice; `model` follows.
    let with_extras = [ExtraEntry::UserId, ExtraEntry::Model];
    let anonymous = Subject {
        user: None,
        model: Some("gpt-4o"),
        ..subject()
    };
    assert_eq!(
        entries(&with_extras, Quota::user(Usage::Tokens), &anonymous),
        vec![
            ("usage", "user_tokens"),
            ("plan", "pro"),
            ("tenant_id", "acme"),
            ("user_id", "unknown"),
            ("model", "gpt-4o")
        ]
    );
}

#[test]
fn a_users_refused_debit_is_split_into_pieces_of_the_users_counter() {
    let mut debits = Debits::default();
    let debit = Debit::new(
        Quota::user(Usage::Tokens),
        "acme".into(),
        Some("pro".into()),
        Some("alice".into()),
        None,
        8,
    );
    let next = debits.answered(debit, Some(&answered(Verdict::OverLimit, None)));
    assert_eq!(
        next.send.iter().map(Debit::hits).collect::<Vec<_>>(),
        [4, 2, 1]
    );
    for piece in &next.send {
        assert_eq!(piece.quota, Quota::user(Usage::Tokens));
        assert_eq!(piece.user.as_deref(), Some("alice"));
    }
}

#[test]
fn request_carries_one_descriptor_and_both_hits_addends() {
    let bytes = request(
        "tenant-guard",
        &[("usage", "tokens"), ("tenant_id", "acme")],
        300,
    );
    let top = fields(&bytes);
    assert_eq!(top[0], (1, b"tenant-guard".to_vec(), None));
    assert_eq!(top[2], (3, vec![], Some(300)));
    let descriptor = fields(&top[1].1);
    let first = fields(&descriptor[0].1);
    assert_eq!(first[0].1, b"usage");
    assert_eq!(first[1].1, b"tokens");
    let wrapper = fields(&descriptor[2].1);
    assert_eq!(descriptor[2].0, 3);
    assert_eq!(wrapper, vec![(1, vec![], Some(300))]);
}

#[test]
fn a_check_only_request_says_zero_in_the_wrapper_and_omits_the_top_level_addend() {
    let bytes = request("d", &[("usage", "tokens")], 0);
    let top = fields(&bytes);
    assert_eq!(
        top.len(),
        2,
        "no top-level hits_addend: there 0 would mean 1"
    );
    let descriptor = fields(&top[1].1);
    assert_eq!(
        descriptor[1],
        (3, vec![], None),
        "an empty UInt64Value is 0"
    );
}

#[test]
fn grpc_service_names_the_cluster() {
    let service = grpc_service("ratelimit");
    let envoy_grpc = fields(&service);
    assert_eq!(envoy_grpc[0].0, 1);
    assert_eq!(
        fields(&envoy_grpc[0].1),
        vec![(1, b"ratelimit".to_vec(), None)]
    );
}

/// A response as a service would encode it.
fn response(code: u64, remaining: &[u64], headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint_field(&mut out, 1, code);
    for r in remaining {
        let mut status = Vec::new();
        put_varint_field(&mut status, 1, code);
        put_varint_field(&mut status, 3, *r);
        put_bytes(&mut out, 2, &status);
    }
    for (k, v) in headers {
        let mut header = Vec::new();
        put_bytes(&mut header, 1, k.as_bytes());
        put_bytes(&mut header, 2, v.as_bytes());
        put_bytes(&mut out, 3, &header);
    }
    out
}

#[test]
fn answers_are_decoded_with_remaining_and_headers() {
    let a = answer(&response(2, &[7, 3], &[("x-ratelimit-limit", "10")])).unwrap();
    assert_eq!(a.verdict, Verdict::OverLimit);
    assert_eq!(a.limit_remaining, Some(3));
    assert_eq!(
        a.response_headers,
        vec![("x-ratelimit-limit".into(), "10".into())]
    );
    let ok = answer(&response(1, &[], &[])).unwrap();
    assert_eq!((ok.verdict, ok.limit_remaining), (Verdict::Ok, None));
    // An empty message is UNKNOWN: the service could not decide.
    assert_eq!(answer(b"").unwrap().verdict, Verdict::Unknown);
}

#[test]
fn garbage_answers_are_refused_without_panicking() {
    for garbage in [
        &b"\xff"[..],
        b"\x12\x05ab",
        b"\x08",
        b"\x0f\x00",
        &[0x80; 20][..],
        b"\x1a\x04\x0a\x02\xff\xfe",
    ] {
        assert_eq!(answer(garbage), None, "{garbage:?}");
    }
}

fn answered(verdict: Verdict, limit_remaining: Option<u64>) -> Answer {
    Answer {
        verdict,
        reset_after: None,
        limit_remaining,
        response_headers: vec![],
    }
}

fn debit(tokens: u64) -> Debit {
    Debit::new(
        Quota::tenant(Usage::Tokens),
        "acme".into(),
        Some("pro".into()),
        None,
        None,
        tokens,
    )
}

/// The order in which a Limitador-like counter takes calls sent side by side.
#[derive(Clone, Copy, Debug)]
enum Order {
    AsSent,
    /// The last sent first (smallest pieces first): the service answers concurrently.
    Reversed,
}

/// Runs a debit against a Limitador-like counter: a hit that would cross `limit` is refused
/// and counts nothing; calls sent side by side are taken in the order they were sent. Returns
/// the counter and the number of calls.
fn against_limitador(counter: u64, limit: u64, tokens: u64) -> (u64, u32) {
    against_limitador_in(Order::AsSent, counter, limit, tokens)
}

fn against_limitador_in(order: Order, mut counter: u64, limit: u64, tokens: u64) -> (u64, u32) {
    let mut debits = Debits::default();
    let mut queue = std::collections::VecDeque::from([debit(tokens)]);
    let mut calls = 0;
    while let Some(d) = match order {
        Order::AsSent => queue.pop_front(),
        Order::Reversed => queue.pop_back(),
    } {
        calls += 1;
        let hits = d.hits();
        let verdict = if counter + hits > limit {
            Verdict::OverLimit
        } else {
            counter += hits;
            Verdict::Ok
        };
        let next = debits.answered(d, Some(&answered(verdict, None)));
        assert_eq!(next.gave_up, None);
        queue.extend(next.send);
    }
    assert!(debits.rounds.is_empty(), "rounds left open");
    (counter, calls)
}

#[test]
fn a_debit_that_fits_takes_one_call() {
    assert_eq!(against_limitador(100, 1000, 300), (400, 1));
}

#[test]
fn a_debit_refused_by_limitador_still_exhausts_the_counter_in_one_more_round() {
    for (counter, limit, tokens) in [
        (990, 1000, 300),
        (0, 5, 6),
        (4, 5, 2),
        (904, 1000, 300),
        (0, 1000, 1_000_000),
    ] {
        let (after, calls) = against_limitador(counter, limit, tokens);
        assert_eq!(after, limit, "{counter}+{tokens} against {limit}");
        let round = pieces(tokens - 1).len() as u32;
        assert_eq!(calls, 1 + round, "{calls} calls");
    }
}

#[test]
fn pieces_fill_every_amount_below_their_total_largest_first() {
    for total in [1, 2, 3, 7, 99, 299, 1000, 4999] {
        let pieces = pieces(total);
        assert_eq!(pieces.iter().sum::<u64>(), total, "{pieces:?}");
        assert!(pieces.windows(2).all(|w| w[0] >= w[1]), "{pieces:?}");
        for room in 0..=total {
            let taken = pieces.iter().fold(
                0,
                |taken, p| {
                    if taken + p <= room {
                        taken + p
                    } else {
                        taken
                    }
                },
            );
            assert_eq!(taken, room, "{pieces:?} into {room}");
        }
    }
    assert_eq!(pieces(99), vec![50, 25, 12, 6, 3, 2, 1]);
    assert!(pieces(0).is_empty());
}

#[test]
fn pieces_taken_in_any_order_still_exhaust_the_counter() {
    // Smallest first, the pieces that fit leave room; the round's smallest refused piece is
    // split again until the counter is full.
    for (counter, limit, tokens) in [
        (909, 1000, 100),
        (990, 1000, 300),
        (0, 5, 6),
        (4, 5, 2),
        (0, 1000, 1_000_000),
    ] {
        let (after, calls) = against_limitador_in(Order::Reversed, counter, limit, tokens);
        assert_eq!(after, limit, "{counter}+{tokens} against {limit}");
        // A round per halving at most.
        let round = pieces(tokens - 1).len() as u32;
        assert!(calls <= 1 + round * round, "{calls} calls");
    }
}

#[test]
fn a_round_is_split_again_by_its_smallest_refused_piece_once_every_answer_is_in() {
    let mut debits = Debits::default();
    let refused = answered(Verdict::OverLimit, None);
    let ok = answered(Verdict::Ok, None);
    let round = debits.answered(debit(100), Some(&refused)).send;
    assert_eq!(
        round.iter().map(Debit::hits).collect::<Vec<_>>(),
        [50, 25, 12, 6, 3, 2, 1]
    );
    let mut round = round.into_iter();
    for answer in [&ok, &refused, &ok, &refused, &ok, &ok] {
        let step = debits.answered(round.next().unwrap(), Some(answer));
        assert_eq!(
            step,
            DebitNext::default(),
            "nothing until the round is complete"
        );
    }
    let next = debits.answered(round.next().unwrap(), Some(&ok)).send;
    // 6 was the smallest refused: at most 5 left.
    assert_eq!(next.iter().map(Debit::hits).collect::<Vec<_>>(), [3, 1, 1]);
    // A refused hit of 1 ends it: the counter is full.
    let mut debits = Debits::default();
    assert_eq!(
        debits.answered(debit(1), Some(&refused)),
        DebitNext::default()
    );
    assert!(debits.rounds.is_empty());
}

#[test]
fn an_over_limit_that_was_counted_ends_the_debit() {
    // envoyproxy/ratelimit: counted, and it says how much is left.
    let mut debits = Debits::default();
    assert_eq!(
        debits.answered(debit(500), Some(&answered(Verdict::OverLimit, Some(0)))),
        DebitNext::default()
    );
}

#[test]
fn failed_calls_are_retried_a_few_times_then_given_up() {
    let mut debits = Debits::default();
    let again = debits.answered(debit(500), None).send;
    assert_eq!(again.len(), 1);
    let again = again.into_iter().next().unwrap();
    assert_eq!(
        again.hits(),
        500,
        "a failed call is retried with the same amount"
    );
    let again = debits
        .answered(again, Some(&answered(Verdict::Unknown, None)))
        .send
        .into_iter()
        .next()
        .unwrap();
    let last = debits.answered(again, None);
    assert_eq!((last.send.len(), last.gave_up), (0, Some(500)));
}

#[test]
fn a_piece_given_up_still_closes_its_round() {
    let mut debits = Debits::default();
    let refused = answered(Verdict::OverLimit, None);
    let round = debits.answered(debit(4), Some(&refused)).send;
    assert_eq!(round.iter().map(Debit::hits).collect::<Vec<_>>(), [2, 1]);
    let mut round = round.into_iter();
    assert_eq!(
        debits.answered(round.next().unwrap(), Some(&refused)).send,
        []
    );
    let mut piece = round.next().unwrap();
    for _ in 0..2 {
        piece = debits
            .answered(piece, None)
            .send
            .into_iter()
            .next()
            .unwrap();
    }
    let last = debits.answered(piece, None);
    assert_eq!(last.gave_up, Some(1));
    // The refused 2 leaves at most 1: one more round.
    assert_eq!(last.send.iter().map(Debit::hits).collect::<Vec<_>>(), [1]);
}

#[test]
fn durations_until_reset_are_read() {
    let mut status = Vec::new();
    put_varint_field(&mut status, 1, 2);
    let mut duration = Vec::new();
    put_varint_field(&mut duration, 1, 42);
    put_bytes(&mut status, 4, &duration);
    let mut out = Vec::new();
    put_varint_field(&mut out, 1, 2);
    put_bytes(&mut out, 2, &status);
    assert_eq!(answer(&out).unwrap().reset_after, Some(42));
}
