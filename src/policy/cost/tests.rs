use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::BTreeMap;

/// The contract's example prices: gpt-4o at $2.5 / $10 per million, default $1 / $3.
fn pricing() -> Pricing {
    Pricing {
        models: BTreeMap::from([("gpt-4o".to_owned(), price(2_500_000, 10_000_000))]),
        default: Some(price(1_000_000, 3_000_000)),
    }
}

fn price(input: u64, output: u64) -> Price {
    Price::flat(input, output)
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

/// A tiny deterministic generator (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn cost_is_tokens_times_price_in_pico_usd() {
    let cost = Cost::of(&usage(1000, 500), &price(2_500_000, 10_000_000));
    assert_eq!(cost.pico_usd(), 1000 * 2_500_000 + 500 * 10_000_000);
    assert_eq!(cost.to_decimal_usd(), "0.0075");
}

#[test]
fn without_cache_prices_cached_tokens_are_priced_as_input() {
    let mut u = usage(100, 0);
    let plain = Cost::of(&u, &price(1_000_000, 0));
    u.cached_input_tokens = 80;
    u.cache_write_tokens = 20;
    assert_eq!(Cost::of(&u, &price(1_000_000, 0)), plain);
}

#[test]
fn cache_reads_and_writes_are_priced_at_their_own_rates() {
    // $3 input, $0.30 cache reads, $3.75 cache writes, $15 output per million (Anthropic-like).
    let price = Price {
        cached_input_micro_usd_per_million: 300_000,
        cache_write_micro_usd_per_million: 3_750_000,
        ..Price::flat(3_000_000, 15_000_000)
    };
    let u = Usage {
        input_tokens: 1000,
        cached_input_tokens: 600,
        cache_write_tokens: 300,
        output_tokens: 50,
        reasoning_tokens: 20,
    };
    let expected = 100 * 3_000_000 + 600 * 300_000 + 300 * 3_750_000 + 50 * 15_000_000;
    assert_eq!(Cost::of(&u, &price).pico_usd(), expected);
    assert_eq!(Cost::of(&u, &price).to_decimal_usd(), "0.002355");
}

#[test]
fn reasoning_tokens_are_part_of_output_and_not_priced_twice() {
    let mut u = usage(0, 100);
    let plain = Cost::of(&u, &price(0, 10_000_000));
    u.reasoning_tokens = 60;
    assert_eq!(Cost::of(&u, &price(0, 10_000_000)), plain);
}

#[test]
fn decimal_rendering_is_exact_and_trimmed() {
    let cases = [
        (0, "0"),
        (1, "0.000000000001"),
        (2_500_000, "0.0000025"),
        (12_500_000_000_000, "12.5"),
        (3_000_000_000_000, "3"),
        (1_000_000_000_001, "1.000000000001"),
        (100_000_000_000, "0.1"),
    ];
    for (pico, text) in cases {
        let cost = Cost::from_pico_usd(pico);
        assert_eq!(cost.to_decimal_usd(), text);
        assert_eq!(cost.to_string(), text);
        assert_eq!(Cost::from_decimal_usd(text), Some(cost));
    }
}

#[test]
fn one_token_at_two_and_a_half_dollars_a_million() {
    let cost = Cost::of(&usage(1, 0), &price(2_500_000, 0));
    assert_eq!(cost.to_decimal_usd(), "0.0000025");
    assert_eq!(cost.micro_usd_ceil(), 3);
}

#[test]
fn micro_usd_rounds_up_only_when_there_is_a_remainder() {
    assert_eq!(Cost::ZERO.micro_usd_ceil(), 0);
    assert_eq!(Cost::from_pico_usd(1).micro_usd_ceil(), 1);
    assert_eq!(Cost::from_pico_usd(1_000_000).micro_usd_ceil(), 1);
    assert_eq!(Cost::from_pico_usd(1_000_001).micro_usd_ceil(), 2);
    assert_eq!(Cost::from_micro_usd(7500).micro_usd_ceil(), 7500);
    assert_eq!(Cost::from_pico_usd(u128::MAX).micro_usd_ceil(), u64::MAX);
}

#[test]
fn extreme_usage_and_prices_do_not_overflow() {
    let cost = Cost::of(&usage(u64::MAX, u64::MAX), &price(u64::MAX, u64::MAX));
    let product = u128::from(u64::MAX) * u128::from(u64::MAX);
    assert_eq!(cost.pico_usd(), product.saturating_add(product));
    assert_eq!(
        Cost::from_decimal_usd(&cost.to_decimal_usd()).map(|c| c.pico_usd()),
        Some(cost.pico_usd())
    );
    let max = Cost::from_pico_usd(u128::MAX);
    assert_eq!(max + Cost::from_pico_usd(1), max);
    assert_eq!(Cost::from_micro_usd(u64::MAX).micro_usd_ceil(), u64::MAX);
}

#[test]
fn malformed_decimal_strings_are_rejected() {
    for text in [
        "",
        ".",
        "1.",
        ".5",
        "-1",
        "+1",
        "1e3",
        "1.2.3",
        " 1",
        "1 ",
        "0.0000000000001",
        "abc",
        "1,5",
    ] {
        assert_eq!(Cost::from_decimal_usd(text), None, "{text:?}");
    }
    assert_eq!(Cost::from_decimal_usd(&"9".repeat(40)), None);
    assert_eq!(
        Cost::from_decimal_usd("007.50"),
        Some(Cost::from_pico_usd(7_500_000_000_000))
    );
}

#[test]
fn record_strings_sum_exactly_to_the_total_cost() {
    let pricing = pricing();
    let mut rng = Lcg(2024);
    let mut total = Cost::ZERO;
    let mut summed_from_strings: u128 = 0;
    for i in 0..5000 {
        let model = ["gpt-4o", "other"][i % 2];
        let used = usage(rng.below(200_000), rng.below(20_000));
        let cost = Cost::of(&used, price_for(&pricing, Some(model)).unwrap());
        let record = cost.to_decimal_usd();
        summed_from_strings += Cost::from_decimal_usd(&record).unwrap().pico_usd();
        total += cost;
    }
    assert_eq!(summed_from_strings, total.pico_usd());
    assert_eq!(
        Cost::from_pico_usd(summed_from_strings).to_decimal_usd(),
        total.to_decimal_usd()
    );
}

#[test]
fn costs_add_and_sum() {
    let a = Cost::from_pico_usd(2_500_000);
    let b = Cost::from_pico_usd(7_500_000);
    assert_eq!((a + b).to_decimal_usd(), "0.00001");
    let total: Cost = [a, b, a].into_iter().sum();
    assert_eq!(total.pico_usd(), 12_500_000);
    let mut c = Cost::ZERO;
    c += a;
    assert_eq!(c, a);
}

#[test]
fn price_is_the_models_own_else_the_default() {
    let pricing = pricing();
    assert_eq!(
        price_for(&pricing, Some("gpt-4o")),
        Some(&price(2_500_000, 10_000_000))
    );
    assert_eq!(
        price_for(&pricing, Some("gpt-4o-mini")),
        Some(&price(1_000_000, 3_000_000))
    );
    assert_eq!(
        price_for(&pricing, None),
        Some(&price(1_000_000, 3_000_000))
    );
}

#[test]
fn no_price_without_a_default() {
    let mut pricing = pricing();
    pricing.default = None;
    assert_eq!(price_for(&pricing, Some("claude")), None);
    assert_eq!(price_for(&pricing, None), None);
    assert!(price_for(&pricing, Some("gpt-4o")).is_some());
    assert_eq!(price_for(&Pricing::default(), Some("gpt-4o")), None);
}

#[test]
fn estimate_prices_input_and_output_estimates() {
    let p = price(2_500_000, 10_000_000);
    assert_eq!(estimate(&p, 1000, 500), Cost::of(&usage(1000, 500), &p));
    assert_eq!(estimate(&p, 0, 0), Cost::ZERO);
}

#[test]
fn descriptor_models_are_the_priced_ones_or_other() {
    assert_eq!(known_model(&pricing(), "gpt-4o"), "gpt-4o");
    assert_eq!(known_model(&pricing(), "made-up-12345"), "other");
    assert_eq!(known_model(&Pricing::default(), "anything"), "anything");
}
