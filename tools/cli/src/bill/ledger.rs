//! The month's sums: one row per tenant (and per user, per model when asked), exact to the
//! pico-dollar. Memory grows with the number of rows, never with the number of records: a
//! ledger keeps at most [`MAX_ROWS`] rows and sums any further user or model of a tenant into
//! its `(other)` row, so a flood of made-up model names cannot exhaust it.

use std::collections::BTreeMap;

use crate::bill::record::Entry;

/// Rows one ledger keeps before folding new users and models into `(other)`.
pub const MAX_ROWS: usize = 100_000;
/// The user or model of a record that names none.
pub const NONE: &str = "(none)";
/// Where users and models beyond [`MAX_ROWS`] are summed.
pub const OTHER: &str = "(other)";

/// Sums over records. Money is in pico-USD (the filter's own unit: 12 decimal places), so
/// every `cost_usd` the filter writes adds exactly.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Admitted requests (`decision: allow`, shadow-mode and fail-open admissions included).
    pub requests: u64,
    /// Refused requests (`decision: deny`): counted apart, never part of `requests`.
    pub refused: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    /// The sum of the records' `cost_usd`.
    pub cost_pico_usd: u128,
    /// Requests charged on the filter's estimate (`usage_source: "estimate"`), and their part
    /// of the cost.
    pub estimated_requests: u64,
    pub estimated_cost_pico_usd: u128,
    /// Admitted requests that used tokens but carry no cost (a model without a price).
    pub unpriced_requests: u64,
}

impl Totals {
    pub fn add(&mut self, entry: &Entry) -> Result<(), String> {
        if entry.admitted {
            self.requests += 1;
        } else {
            self.refused += 1;
        }
        let t = &entry.tokens;
        self.input_tokens = self.input_tokens.saturating_add(t.input);
        self.cached_input_tokens = self.cached_input_tokens.saturating_add(t.cached_input);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(t.cache_write);
        self.output_tokens = self.output_tokens.saturating_add(t.output);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(t.reasoning);
        let cost = entry.cost.map_or(0, |c| c.pico_usd());
        self.cost_pico_usd = checked(self.cost_pico_usd, cost)?;
        if entry.estimated {
            self.estimated_requests += 1;
            self.estimated_cost_pico_usd = checked(self.estimated_cost_pico_usd, cost)?;
        }
        if entry.admitted && entry.cost.is_none() && t.input.saturating_add(t.output) > 0 {
            self.unpriced_requests += 1;
        }
        Ok(())
    }

    pub fn merge(&mut self, other: &Totals) -> Result<(), String> {
        self.requests += other.requests;
        self.refused += other.refused;
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
        self.cost_pico_usd = checked(self.cost_pico_usd, other.cost_pico_usd)?;
        self.estimated_requests += other.estimated_requests;
        self.estimated_cost_pico_usd =
            checked(self.estimated_cost_pico_usd, other.estimated_cost_pico_usd)?;
        self.unpriced_requests += other.unpriced_requests;
        Ok(())
    }
}

fn checked(a: u128, b: u128) -> Result<u128, String> {
    a.checked_add(b)
        .ok_or_else(|| "the sum of cost_usd overflows (more than 10^26 USD)".to_string())
}

/// How rows are split below the tenant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub user: bool,
    pub model: bool,
}

/// A row's key: the tenant, and the user and model when the bill is split by them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub tenant: String,
    pub user: Option<String>,
    pub model: Option<String>,
}

/// What was read, besides the sums.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    /// Request records read (any month).
    pub records: u64,
    /// Records of the month (in `rows`, or `unattributed`).
    pub in_month: u64,
    pub outside_month: u64,
    /// Records of the month without a tenant and without usage (bypassed paths, requests
    /// refused before the caller was known): nobody to bill.
    pub unattributed: u64,
    /// Of those, refused.
    pub unattributed_refused: u64,
    pub audit_lines: u64,
    /// JSON access-log lines without the filter's decision.
    pub undecided: u64,
    /// Malformed records left out (`--skip-bad`).
    pub skipped: u64,
    /// Lines longer than the reader keeps (no record is that long).
    pub too_long: u64,
    /// Records whose user or model went to an `(other)` row (more than [`MAX_ROWS`] rows).
    pub folded: u64,
}

#[derive(Debug)]
pub struct Ledger {
    /// `[from, until)` in milliseconds since the epoch.
    pub from_ms: i64,
    pub until_ms: i64,
    pub split: Split,
    pub rows: BTreeMap<Key, Totals>,
    pub counts: Counts,
}

impl Ledger {
    pub fn new(from_ms: i64, until_ms: i64, split: Split) -> Ledger {
        Ledger {
            from_ms,
            until_ms,
            split,
            rows: BTreeMap::new(),
            counts: Counts::default(),
        }
    }

    /// Adds a record (any month: records of other months are only counted).
    pub fn add(&mut self, entry: &Entry) -> Result<(), String> {
        self.counts.records += 1;
        if entry.time_ms < self.from_ms || entry.time_ms >= self.until_ms {
            self.counts.outside_month += 1;
            return Ok(());
        }
        self.counts.in_month += 1;
        let has_usage = entry.cost.is_some()
            || entry.tokens.input > 0
            || entry.tokens.output > 0
            || entry.estimated;
        let tenant = match (&entry.tenant, has_usage) {
            (Some(tenant), _) => tenant.clone(),
            // Never seen from the filter (usage is metered for admitted tenants only); kept
            // so the sums stay whole if it ever is.
            (None, true) => NONE.to_string(),
            (None, false) => {
                self.counts.unattributed += 1;
                if !entry.admitted {
                    self.counts.unattributed_refused += 1;
                }
                return Ok(());
            }
        };
        let name = |wanted: bool, value: &Option<String>| {
            wanted.then(|| value.clone().unwrap_or_else(|| NONE.to_string()))
        };
        let mut key = Key {
            tenant,
            user: name(self.split.user, &entry.user),
            model: name(self.split.model, &entry.model),
        };
        if !self.rows.contains_key(&key) && self.rows.len() >= MAX_ROWS {
            self.counts.folded += 1;
            key.user = key.user.map(|_| OTHER.to_string());
            key.model = key.model.map(|_| OTHER.to_string());
        }
        self.rows.entry(key).or_default().add(entry)
    }

    /// Each tenant's sums over its rows, in tenant order.
    pub fn tenants(&self) -> Result<Vec<(&str, Totals)>, String> {
        let mut out: Vec<(&str, Totals)> = Vec::new();
        for (key, totals) in &self.rows {
            match out.last_mut() {
                Some((tenant, sum)) if *tenant == key.tenant => sum.merge(totals)?,
                _ => out.push((&key.tenant, *totals)),
            }
        }
        Ok(out)
    }

    pub fn total(&self) -> Result<Totals, String> {
        let mut total = Totals::default();
        for totals in self.rows.values() {
            total.merge(totals)?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bill::record::Tokens;
    use tenant_guard::policy::cost::Cost;

    fn entry(tenant: Option<&str>, user: &str, model: &str, cost: Option<&str>) -> Entry {
        Entry {
            time_ms: 1_000,
            tenant: tenant.map(str::to_string),
            user: Some(user.to_string()),
            model: Some(model.to_string()),
            admitted: true,
            tokens: Tokens {
                input: 10,
                cached_input: 4,
                cache_write: 1,
                output: 5,
                reasoning: 2,
            },
            cost: cost.map(|c| Cost::from_decimal_usd(c).unwrap()),
            estimated: false,
        }
    }

    #[test]
    fn sums_are_exact_to_the_pico_dollar() {
        let mut ledger = Ledger::new(0, 10_000, Split::default());
        // 0.1 + 0.2 (not 0.30000000000000004), and the smallest unit the filter writes.
        for cost in ["0.1", "0.2", "0.000000000001", "12345678901.999999999999"] {
            ledger
                .add(&entry(Some("acme"), "a", "m", Some(cost)))
                .unwrap();
        }
        let total = ledger.total().unwrap();
        assert_eq!(
            Cost::from_pico_usd(total.cost_pico_usd).to_decimal_usd(),
            "12345678902.300000000000".trim_end_matches('0')
        );
        assert_eq!(total.requests, 4);
        assert_eq!(total.input_tokens, 40);
        assert_eq!(total.cached_input_tokens, 16);
        assert_eq!(total.cache_write_tokens, 4);
        assert_eq!(total.reasoning_tokens, 8);
    }

    #[test]
    fn refusals_estimates_and_unpriced_requests_are_counted_apart() {
        let mut ledger = Ledger::new(0, 10_000, Split::default());
        let mut refused = entry(Some("acme"), "a", "m", None);
        refused.admitted = false;
        refused.tokens = Tokens::default();
        ledger.add(&refused).unwrap();
        let mut estimate = entry(Some("acme"), "a", "m", Some("0.5"));
        estimate.estimated = true;
        ledger.add(&estimate).unwrap();
        ledger
            .add(&entry(Some("acme"), "a", "m", Some("0.25")))
            .unwrap();
        ledger
            .add(&entry(Some("acme"), "a", "unpriced", None))
            .unwrap();
        let t = ledger.total().unwrap();
        assert_eq!((t.requests, t.refused), (3, 1));
        assert_eq!(t.estimated_requests, 1);
        assert_eq!(
            Cost::from_pico_usd(t.estimated_cost_pico_usd).to_decimal_usd(),
            "0.5"
        );
        assert_eq!(
            Cost::from_pico_usd(t.cost_pico_usd).to_decimal_usd(),
            "0.75"
        );
        assert_eq!(t.unpriced_requests, 1);
    }

    #[test]
    fn the_month_is_half_open_and_tenantless_records_are_not_billed() {
        let mut ledger = Ledger::new(1_000, 2_000, Split::default());
        for time_ms in [999, 1_000, 1_999, 2_000] {
            let mut e = entry(Some("acme"), "a", "m", Some("1"));
            e.time_ms = time_ms;
            ledger.add(&e).unwrap();
        }
        let mut nobody = entry(None, "a", "m", None);
        nobody.time_ms = 1_500;
        nobody.tokens = Tokens::default();
        nobody.admitted = false;
        ledger.add(&nobody).unwrap();
        assert_eq!(ledger.total().unwrap().requests, 2);
        assert_eq!(ledger.counts.outside_month, 2);
        assert_eq!(ledger.counts.in_month, 3);
        assert_eq!(
            (
                ledger.counts.unattributed,
                ledger.counts.unattributed_refused
            ),
            (1, 1)
        );
        assert_eq!(ledger.rows.len(), 1);
    }

    #[test]
    fn rows_split_by_user_and_model_add_up_to_the_tenant() {
        let mut ledger = Ledger::new(
            0,
            10_000,
            Split {
                user: true,
                model: true,
            },
        );
        for (tenant, user, model, cost) in [
            ("acme", "alice", "gpt-4o", "0.003"),
            ("acme", "alice", "gpt-4o", "0.004"),
            ("acme", "bob", "gpt-4o", "0.01"),
            ("acme", "bob", "claude", "0.02"),
            ("globex", "carol", "claude", "1"),
        ] {
            ledger
                .add(&entry(Some(tenant), user, model, Some(cost)))
                .unwrap();
        }
        assert_eq!(ledger.rows.len(), 4);
        let tenants = ledger.tenants().unwrap();
        assert_eq!(tenants.len(), 2);
        assert_eq!(tenants[0].0, "acme");
        assert_eq!(
            Cost::from_pico_usd(tenants[0].1.cost_pico_usd).to_decimal_usd(),
            "0.037"
        );
        assert_eq!(tenants[0].1.requests, 4);
        assert_eq!(tenants[1].1.requests, 1);
        let mut no_user = entry(Some("acme"), "x", "gpt-4o", None);
        no_user.user = None;
        ledger.add(&no_user).unwrap();
        assert!(ledger.rows.contains_key(&Key {
            tenant: "acme".into(),
            user: Some(NONE.into()),
            model: Some("gpt-4o".into()),
        }));
    }

    #[test]
    fn rows_beyond_the_bound_fold_into_other_and_still_add_up() {
        let mut ledger = Ledger::new(
            0,
            10_000,
            Split {
                user: false,
                model: true,
            },
        );
        let n = MAX_ROWS + 50;
        for i in 0..n {
            ledger
                .add(&entry(
                    Some("acme"),
                    "a",
                    &format!("model-{i}"),
                    Some("0.000001"),
                ))
                .unwrap();
        }
        assert_eq!(ledger.rows.len(), MAX_ROWS + 1);
        assert_eq!(ledger.counts.folded, 50);
        let other = ledger.rows[&Key {
            tenant: "acme".into(),
            user: None,
            model: Some(OTHER.into()),
        }];
        assert_eq!(other.requests, 50);
        let total = ledger.total().unwrap();
        assert_eq!(total.requests, n as u64);
        assert_eq!(total.cost_pico_usd, n as u128 * 1_000_000);
    }
}
