//! The bill as a table, CSV or JSON. Money is written exactly (the filter's decimal form:
//! no exponent, no trailing zeros; the table pads to cents).

use serde_json::{json, Map, Value};
use tenant_guard::policy::cost::Cost;

use crate::audit::time;
use crate::bill::ledger::{Key, Ledger, Totals};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Exact decimal USD of pico-USD.
pub fn usd(pico_usd: u128) -> String {
    Cost::from_pico_usd(pico_usd).to_decimal_usd()
}

/// At least two decimal places, for reading: `12` → `12.00`, `0.0027` stays.
fn usd_cents(pico_usd: u128) -> String {
    let text = usd(pico_usd);
    match text.split_once('.') {
        None => format!("{text}.00"),
        Some((_, fraction)) if fraction.len() == 1 => format!("{text}0"),
        Some(_) => text,
    }
}

fn rfc3339(ms: i64) -> String {
    // `hour_of` gives YYYY-MM-DDTHH; months start on the hour.
    format!("{}:00:00Z", time::hour_of(ms))
}

fn columns(totals: &Totals) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("requests".into(), json!(totals.requests));
    m.insert("refused".into(), json!(totals.refused));
    m.insert("input_tokens".into(), json!(totals.input_tokens));
    m.insert(
        "cached_input_tokens".into(),
        json!(totals.cached_input_tokens),
    );
    m.insert(
        "cache_write_tokens".into(),
        json!(totals.cache_write_tokens),
    );
    m.insert("output_tokens".into(), json!(totals.output_tokens));
    m.insert("reasoning_tokens".into(), json!(totals.reasoning_tokens));
    m.insert("cost_usd".into(), json!(usd(totals.cost_pico_usd)));
    m.insert(
        "estimated_requests".into(),
        json!(totals.estimated_requests),
    );
    m.insert(
        "estimated_cost_usd".into(),
        json!(usd(totals.estimated_cost_pico_usd)),
    );
    m.insert("unpriced_requests".into(), json!(totals.unpriced_requests));
    m
}

fn key_columns(key: &Key) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("tenant".into(), json!(key.tenant));
    if let Some(user) = &key.user {
        m.insert("user".into(), json!(user));
    }
    if let Some(model) = &key.model {
        m.insert("model".into(), json!(model));
    }
    m
}

/// The rows, serialised one at a time (no tree of the whole document in memory).
struct Rows<'a>(&'a Ledger);

impl serde::Serialize for Rows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.rows.len()))?;
        for (key, totals) in &self.0.rows {
            let mut row = key_columns(key);
            row.extend(columns(totals));
            seq.serialize_element(&row)?;
        }
        seq.end()
    }
}

/// One JSON document: the month, the rows, each tenant's sums, the total, and what was read.
pub fn json(ledger: &Ledger, month: &str) -> Result<String, String> {
    let tenants: Vec<Value> = ledger
        .tenants()?
        .into_iter()
        .map(|(tenant, totals)| {
            let mut row = Map::new();
            row.insert("tenant".into(), json!(tenant));
            row.extend(columns(&totals));
            Value::Object(row)
        })
        .collect();
    let mut by = vec!["tenant"];
    if ledger.split.user {
        by.push("user");
    }
    if ledger.split.model {
        by.push("model");
    }
    let c = &ledger.counts;
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        month: &'a str,
        from: String,
        until: String,
        by: Vec<&'a str>,
        rows: Rows<'a>,
        tenants: Vec<Value>,
        total: Map<String, Value>,
        read: Value,
    }
    let doc = Doc {
        month,
        from: rfc3339(ledger.from_ms),
        until: rfc3339(ledger.until_ms),
        by,
        rows: Rows(ledger),
        tenants,
        total: columns(&ledger.total()?),
        read: json!({
            "lines": c.lines,
            "records": c.records,
            "in_month": c.in_month,
            "outside_month": c.outside_month,
            "unattributed": c.unattributed,
            "unattributed_refused": c.unattributed_refused,
            "audit_lines": c.audit_lines,
            "undecided": c.undecided,
            "skipped": c.skipped,
            "too_long": c.too_long,
            "folded": c.folded,
        }),
    };
    serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())
}

const CSV_COLUMNS: [&str; 14] = [
    "tenant",
    "user",
    "model",
    "requests",
    "refused",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "estimated_requests",
    "estimated_cost_usd",
    "unpriced_requests",
];

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break; a text that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a `'` first.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// One line per row, with a header; `user` and `model` are empty when the bill is not split
/// by them. No total line (sum the rows, or use JSON).
pub fn csv(ledger: &Ledger) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for (key, t) in &ledger.rows {
        let fields = [
            csv_field(&key.tenant),
            csv_field(key.user.as_deref().unwrap_or("")),
            csv_field(key.model.as_deref().unwrap_or("")),
            t.requests.to_string(),
            t.refused.to_string(),
            t.input_tokens.to_string(),
            t.cached_input_tokens.to_string(),
            t.cache_write_tokens.to_string(),
            t.output_tokens.to_string(),
            t.reasoning_tokens.to_string(),
            usd(t.cost_pico_usd),
            t.estimated_requests.to_string(),
            usd(t.estimated_cost_pico_usd),
            t.unpriced_requests.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Text for a terminal: client-chosen names (users, models) are shown printable.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A table: one line per row (per tenant subtotals when split), a total line, and notes on
/// estimates and what was left out.
pub fn table(ledger: &Ledger, month: &str) -> Result<String, String> {
    let split = ledger.split.user || ledger.split.model;
    let mut header = vec!["tenant"];
    if ledger.split.user {
        header.push("user");
    }
    if ledger.split.model {
        header.push("model");
    }
    let numbers = [
        "requests",
        "refused",
        "input",
        "cached",
        "cache-write",
        "output",
        "reasoning",
        "USD",
    ];
    header.extend(numbers);
    let names = header.len() - numbers.len();
    let line = |names_of: Vec<String>, t: &Totals| -> Vec<String> {
        let mut cells = names_of;
        cells.extend([
            t.requests.to_string(),
            t.refused.to_string(),
            t.input_tokens.to_string(),
            t.cached_input_tokens.to_string(),
            t.cache_write_tokens.to_string(),
            t.output_tokens.to_string(),
            t.reasoning_tokens.to_string(),
            format!(
                "{}{}",
                usd_cents(t.cost_pico_usd),
                if t.estimated_requests > 0 { " *" } else { "" }
            ),
        ]);
        cells
    };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let tenants = ledger.tenants()?;
    let mut tenant_sums = tenants.iter().peekable();
    let mut keys = ledger.rows.iter().peekable();
    while let Some((key, t)) = keys.next() {
        let mut names_of = vec![printable(&key.tenant)];
        names_of.extend(key.user.as_deref().map(printable));
        names_of.extend(key.model.as_deref().map(printable));
        rows.push(line(names_of, t));
        let tenant_ends = keys
            .peek()
            .is_none_or(|(next, _)| next.tenant != key.tenant);
        if tenant_ends {
            if let Some((tenant, sum)) = tenant_sums.next() {
                if split {
                    let mut names_of = vec![printable(tenant)];
                    names_of.extend(std::iter::repeat_n("(all)".to_string(), names - 1));
                    rows.push(line(names_of, sum));
                }
            }
        }
    }
    let total = ledger.total()?;
    let mut names_of = vec!["TOTAL".to_string()];
    names_of.extend(std::iter::repeat_n(String::new(), names - 1));
    rows.push(line(names_of, &total));

    let mut widths = vec![0; header.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let c = &ledger.counts;
    let mut out = format!(
        "Bill for {month} (UTC, {} to {}): {} records of the month, {} lines read\n\n",
        rfc3339(ledger.from_ms),
        rfc3339(ledger.until_ms),
        c.in_month,
        c.lines
    );
    for row in &rows {
        let mut text = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            if i < names {
                text.push_str(&format!("{cell:<w$}"));
            } else {
                text.push_str(&format!("{cell:>w$}"));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out.push('\n');
    if total.estimated_requests > 0 {
        out.push_str(&format!(
            "* includes {} request(s) charged on the filter's estimate (streams cut before \
             their usage): USD {}\n",
            total.estimated_requests,
            usd(total.estimated_cost_pico_usd)
        ));
    }
    if total.unpriced_requests > 0 {
        out.push_str(&format!(
            "{} admitted request(s) used tokens of a model without a price: no USD\n",
            total.unpriced_requests
        ));
    }
    out.push_str(&format!(
        "refused requests are counted apart (\"refused\"), never in \"requests\"; {} record(s) \
         of the month named no tenant ({} refused): not billed\n",
        c.unattributed, c.unattributed_refused
    ));
    if c.outside_month > 0 {
        out.push_str(&format!(
            "{} record(s) of other months left out\n",
            c.outside_month
        ));
    }
    if c.folded > 0 {
        out.push_str(&format!(
            "{} record(s) summed under (other): more than {} rows\n",
            c.folded,
            crate::bill::ledger::MAX_ROWS
        ));
    }
    if c.skipped > 0 {
        out.push_str(&format!(
            "{} malformed record(s) skipped (--skip-bad): the bill leaves them out\n",
            c.skipped
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bill::ledger::Split;
    use crate::bill::record::{Entry, Tokens};

    fn ledger(split: Split) -> Ledger {
        let mut l = Ledger::new(0, 10_000, split);
        for (tenant, user, model, cost, estimated) in [
            ("acme", "alice", "gpt-4o", "0.0027", false),
            ("acme", "=cmd|' /C calc'!A0", "gpt-4o", "1.5", true),
            ("globex", "bob, jr", "claude \"3\"", "2", false),
        ] {
            l.add(&Entry {
                time_ms: 5,
                tenant: Some(tenant.into()),
                user: Some(user.into()),
                model: Some(model.into()),
                admitted: true,
                tokens: Tokens {
                    input: 100,
                    cached_input: 10,
                    cache_write: 0,
                    output: 7,
                    reasoning: 1,
                },
                cost: Cost::from_decimal_usd(cost),
                estimated,
            })
            .unwrap();
        }
        l
    }

    #[test]
    fn json_carries_rows_tenants_and_an_exact_total() {
        let l = ledger(Split {
            user: true,
            model: false,
        });
        let doc: Value = serde_json::from_str(&json(&l, "1970-01").unwrap()).unwrap();
        assert_eq!(doc["total"]["cost_usd"], "3.5027");
        assert_eq!(doc["total"]["estimated_cost_usd"], "1.5");
        assert_eq!(doc["total"]["estimated_requests"], 1);
        assert_eq!(doc["rows"].as_array().unwrap().len(), 3);
        assert_eq!(doc["tenants"][0]["cost_usd"], "1.5027");
        assert_eq!(doc["by"], json!(["tenant", "user"]));
        assert!(doc["rows"][0].get("model").is_none());
        assert_eq!(doc["from"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let text = csv(&ledger(Split {
            user: true,
            model: true,
        }));
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert!(
            lines[1].starts_with("acme,'=cmd|' /C calc'!A0,gpt-4o,1,0,100,10,0,7,1,1.5,1,1.5,0")
        );
        assert!(lines[3].starts_with("globex,\"bob, jr\",\"claude \"\"3\"\"\",1,"));
        assert_eq!(lines.len(), 5); // header, 3 rows, and the empty text after the last CRLF
    }

    #[test]
    fn the_table_marks_estimates_and_subtotals_tenants() {
        let text = table(
            &ledger(Split {
                user: false,
                model: true,
            }),
            "1970-01",
        )
        .unwrap();
        assert!(text.contains("1.5027 *"), "{text}");
        assert!(text.contains("  2.00\n"), "{text}");
        assert!(text.contains("(all)"), "{text}");
        assert!(text.contains("3.5027 *"), "{text}");
        assert!(text.contains("charged on the filter's estimate"), "{text}");
        let plain = table(&ledger(Split::default()), "1970-01").unwrap();
        assert!(!plain.contains("(all)"), "{plain}");
        assert!(plain.lines().any(|l| l.starts_with("TOTAL")), "{plain}");
    }

    #[test]
    fn money_is_exact_and_padded_to_cents_only_in_the_table() {
        assert_eq!(usd(0), "0");
        assert_eq!(usd_cents(0), "0.00");
        assert_eq!(usd_cents(1_500_000_000_000), "1.50");
        assert_eq!(usd_cents(2_700_000_000), "0.0027");
        assert_eq!(usd(1), "0.000000000001");
    }
}
