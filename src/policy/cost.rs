//! Money, exactly: what a request's tokens cost at the configured price.
//!
//! A [`Price`] is micro-USD per million tokens, so tokens × price is a whole number of
//! pico-USD (10^-12 USD). Costs are kept in pico-USD (`u128`, no float anywhere), added
//! exactly, and rendered as exact decimal strings, so the `cost_usd` of the records sum to the
//! cost of the sum. Budgets count whole micro-USD, rounded up so they never under-count.
//!
//! Input tokens read from a prompt cache are priced at the model's cached-input rate, and
//! tokens written to a prompt cache at its cache-write rate (both fall back to the input rate
//! when the pricing table does not give them); the other input tokens at the input rate, and
//! output tokens (reasoning included) at the output rate.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::policy::config_error::ConfigError;
use crate::policy::object_map::ObjectMap;
use crate::policy::usage::Usage;

/// Price of a model in micro-USD per million tokens (= USD per token × 10^12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input_micro_usd_per_million: u64,
    pub output_micro_usd_per_million: u64,
    /// Input tokens read from a prompt cache (the input price when not configured).
    pub cached_input_micro_usd_per_million: u64,
    /// Input tokens written to a prompt cache (the input price when not configured).
    pub cache_write_micro_usd_per_million: u64,
}

impl Price {
    /// A price whose cache reads and writes cost what other input tokens cost.
    pub fn flat(input_micro_usd_per_million: u64, output_micro_usd_per_million: u64) -> Price {
        Price {
            input_micro_usd_per_million,
            output_micro_usd_per_million,
            cached_input_micro_usd_per_million: input_micro_usd_per_million,
            cache_write_micro_usd_per_million: input_micro_usd_per_million,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pricing {
    pub models: BTreeMap<String, Price>,
    pub default: Option<Price>,
}

const PICO_PER_MICRO: u128 = 1_000_000;
const PICO_PER_USD: u128 = 1_000_000_000_000;
/// Decimal places of a pico-USD amount in USD.
const USD_DECIMALS: usize = 12;

/// An exact amount of money, in pico-USD. Addition saturates (it cannot overflow in practice:
/// `u64::MAX` tokens at 10^12 USD per million tokens is still far below `u128::MAX`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    pico_usd: u128,
}

impl Cost {
    pub const ZERO: Cost = Cost { pico_usd: 0 };

    /// What `usage` costs at `price`: cache reads and cache writes at their own rates, the
    /// rest of the input at the input rate, output at the output rate.
    pub fn of(usage: &Usage, price: &Price) -> Cost {
        let uncached = usage
            .input_tokens
            .saturating_sub(usage.cached_input_tokens)
            .saturating_sub(usage.cache_write_tokens);
        let parts = [
            mul(uncached, price.input_micro_usd_per_million),
            mul(
                usage.cached_input_tokens,
                price.cached_input_micro_usd_per_million,
            ),
            mul(
                usage.cache_write_tokens,
                price.cache_write_micro_usd_per_million,
            ),
            mul(usage.output_tokens, price.output_micro_usd_per_million),
        ];
        Cost {
            pico_usd: parts.into_iter().fold(0, u128::saturating_add),
        }
    }

    pub fn from_pico_usd(pico_usd: u128) -> Cost {
        Cost { pico_usd }
    }

    pub fn from_micro_usd(micro_usd: u64) -> Cost {
        Cost {
            pico_usd: u128::from(micro_usd).saturating_mul(PICO_PER_MICRO),
        }
    }

    pub fn pico_usd(&self) -> u128 {
        self.pico_usd
    }

    /// Whole micro-USD, rounded up (for budgets: never under-count); saturates at `u64::MAX`.
    pub fn micro_usd_ceil(&self) -> u64 {
        let whole = self.pico_usd / PICO_PER_MICRO;
        let partial = u128::from(!self.pico_usd.is_multiple_of(PICO_PER_MICRO));
        u64::try_from(whole.saturating_add(partial)).unwrap_or(u64::MAX)
    }

    /// The exact amount in USD as a decimal string without trailing zeros: `"0"`,
    /// `"0.0000025"`, `"12.5"`, `"3"`.
    pub fn to_decimal_usd(&self) -> String {
        let whole = self.pico_usd / PICO_PER_USD;
        let fraction = self.pico_usd % PICO_PER_USD;
        if fraction == 0 {
            return whole.to_string();
        }
        let digits = format!("{fraction:0width$}", width = USD_DECIMALS);
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }

    /// Reads what [`Cost::to_decimal_usd`] writes: digits, optionally a `.` and up to 12 more
    /// digits. `None` for anything else (signs, exponents, finer than a pico-USD, overflow).
    pub fn from_decimal_usd(text: &str) -> Option<Cost> {
        let (whole, fraction) = match text.split_once('.') {
            Some((_, "")) => return None,
            Some(parts) => parts,
            None => (text, ""),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let well_formed = digits(whole)
            && (fraction.is_empty() || digits(fraction))
            && fraction.len() <= USD_DECIMALS;
        if !well_formed {
            return None;
        }
        let whole: u128 = whole.parse().ok()?;
        let fraction = format!("{fraction:0<width$}", width = USD_DECIMALS);
        let fraction: u128 = fraction.parse().ok()?;
        let pico_usd = whole.checked_mul(PICO_PER_USD)?.checked_add(fraction)?;
        Some(Cost { pico_usd })
    }
}

fn mul(tokens: u64, micro_usd_per_million: u64) -> u128 {
    u128::from(tokens).saturating_mul(u128::from(micro_usd_per_million))
}

impl Add for Cost {
    type Output = Cost;

    fn add(self, other: Cost) -> Cost {
        Cost {
            pico_usd: self.pico_usd.saturating_add(other.pico_usd),
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        *self = *self + other;
    }
}

impl Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(costs: I) -> Cost {
        costs.fold(Cost::ZERO, Add::add)
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_usd())
    }
}

/// `model` as a rate-limit descriptor value: the model itself when the pricing table names it
/// (or names no model at all), else `other`, so a client cannot open a counter per made-up name.
pub fn known_model<'a>(pricing: &Pricing, model: &'a str) -> &'a str {
    if pricing.models.is_empty() || pricing.models.contains_key(model) {
        model
    } else {
        "other"
    }
}

/// The price of `model`: its own entry (exact name), else the `default`, else `None`.
pub fn price_for<'a>(pricing: &'a Pricing, model: Option<&str>) -> Option<&'a Price> {
    model
        .and_then(|m| pricing.models.get(m))
        .or(pricing.default.as_ref())
}

/// What a request may cost before its usage is known, for reserving budget: `input_tokens`
/// (e.g. [`crate::policy::usage::estimate_input_tokens`], one token per 4 body bytes) and
/// `output_tokens` (e.g. [`crate::policy::usage::RequestBody::output_estimate`]) at `price`.
pub fn estimate(price: &Price, input_tokens: u64, output_tokens: u64) -> Cost {
    let usage = Usage {
        input_tokens,
        output_tokens,
        ..Usage::default()
    };
    Cost::of(&usage, price)
}

// === Configuration (contract: `pricing`) ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPricing {
    #[serde(default)]
    models: ObjectMap<RawPrice>,
    default: Option<RawPrice>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input_per_million: f64,
    output_per_million: f64,
    cached_input_per_million: Option<f64>,
    cache_write_per_million: Option<f64>,
}

pub(crate) fn compile_pricing(raw: Option<RawPricing>) -> Result<Pricing, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Pricing::default());
    };
    let price = |path: String, p: RawPrice| -> Result<Price, ConfigError> {
        let amount = |field: &str, usd: f64| {
            micro_usd(usd).ok_or_else(|| ConfigError {
                path: format!("{path}.{field}"),
                message: "must be a non-negative amount of USD".into(),
            })
        };
        let input = amount("input_per_million", p.input_per_million)?;
        let output = amount("output_per_million", p.output_per_million)?;
        let cached = p
            .cached_input_per_million
            .map(|usd| amount("cached_input_per_million", usd))
            .transpose()?;
        let write = p
            .cache_write_per_million
            .map(|usd| amount("cache_write_per_million", usd))
            .transpose()?;
        Ok(Price {
            cached_input_micro_usd_per_million: cached.unwrap_or(input),
            cache_write_micro_usd_per_million: write.unwrap_or(input),
            ..Price::flat(input, output)
        })
    };
    let mut models = BTreeMap::new();
    for (model, p) in raw.models {
        models.insert(model.clone(), price(format!("pricing.models.{model}"), p)?);
    }
    let default = raw
        .default
        .map(|p| price("pricing.default".into(), p))
        .transpose()?;
    Ok(Pricing { models, default })
}

/// USD → integer micro-USD; `None` for negative, non-finite or absurd amounts.
pub(crate) fn micro_usd(usd: f64) -> Option<u64> {
    let micro = (usd * 1_000_000.0).round();
    if usd.is_finite() && (0.0..1e18).contains(&micro) {
        // In range and integral, so the conversion is exact.
        Some(micro as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
