//! `summary`: who reached across tenants, from where, and why requests were refused, per hour.
//!
//! Memory grows with the number of distinct tenants, source addresses, reasons and hours, never
//! with the number of lines; each table keeps at most [`MAX_KEYS`] keys and counts the rest
//! under `(other)`.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

use serde::Serialize;

use crate::audit::lines::{Line, Lines};
use crate::audit::record;
use crate::audit::time;

/// Distinct keys one table keeps.
pub const MAX_KEYS: usize = 100_000;
const OTHER: &str = "(other)";

#[derive(Debug, Default, Serialize)]
pub struct Table(BTreeMap<String, u64>);

impl Table {
    fn add(&mut self, key: &str) {
        if let Some(n) = self.0.get_mut(key) {
            *n += 1;
        } else if self.0.len() < MAX_KEYS {
            self.0.insert(key.to_string(), 1);
        } else {
            *self.0.entry(OTHER.to_string()).or_default() += 1;
        }
    }

    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Largest counts first (ties by key).
    pub fn ranked(&self) -> Vec<(&str, u64)> {
        let mut rows: Vec<(&str, u64)> = self.0.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        rows
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub lines: u64,
    pub records: u64,
    pub unreadable: u64,
    /// Chain start records (one per worker VM start).
    pub starts: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub cross_tenant_by_tenant: Table,
    pub cross_tenant_by_source: Table,
    pub cross_tenant_by_reason: Table,
    pub denials_by_reason: Table,
    /// Shadow-mode records: what would have been refused, by reason.
    pub shadow_by_reason: Table,
    pub denials_by_hour: Table,
    pub cross_tenant_by_hour: Table,
}

pub fn summarise(input: impl BufRead) -> io::Result<Summary> {
    let mut lines = Lines::new(input);
    let mut s = Summary::default();
    let (mut first_ms, mut last_ms) = (i64::MAX, i64::MIN);
    while let Some((_, line)) = lines.next_line()? {
        let Line::Text(line) = line else { continue };
        let Some(text) = record::locate(line) else {
            continue;
        };
        let Some(rec) = text.ok().and_then(|t| record::parse(t).ok()) else {
            s.unreadable += 1;
            continue;
        };
        s.records += 1;
        let at = time::parse_ms(&rec.time);
        if let Some(at) = at {
            if at < first_ms {
                first_ms = at;
                s.first_time = Some(rec.time.to_string());
            }
            if at > last_ms {
                last_ms = at;
                s.last_time = Some(rec.time.to_string());
            }
        }
        if rec.event == "start" {
            s.starts += 1;
            continue;
        }
        let hour = at.map_or_else(|| "(no time)".to_string(), time::hour_of);
        let reason = rec.reason.as_deref().unwrap_or("(none)");
        if rec.event == "shadow" {
            s.shadow_by_reason.add(reason);
        } else if rec.decision.as_deref() == Some("deny") {
            s.denials_by_reason.add(reason);
            s.denials_by_hour.add(&hour);
        }
        if rec.is_cross_tenant() {
            s.cross_tenant_by_tenant
                .add(rec.tenant.as_deref().unwrap_or("(none)"));
            s.cross_tenant_by_source
                .add(rec.source_ip().unwrap_or("(none)"));
            s.cross_tenant_by_reason.add(reason);
            s.cross_tenant_by_hour.add(&hour);
        }
    }
    s.lines = lines.number;
    Ok(s)
}

/// The summary as text tables.
pub fn render(s: &Summary, top: usize) -> String {
    let mut out = format!(
        "{} records ({} chain starts) in {} lines, {} to {}\n",
        s.records,
        s.starts,
        s.lines,
        s.first_time.as_deref().unwrap_or("-"),
        s.last_time.as_deref().unwrap_or("-")
    );
    if s.unreadable > 0 {
        out.push_str(&format!("{} unreadable audit records\n", s.unreadable));
    }
    let mut table = |title: &str, t: &Table, ranked: bool| {
        out.push_str(&format!("\n{title} ({} in all)\n", t.total()));
        let rows = if ranked {
            t.ranked()
        } else {
            t.0.iter().map(|(k, v)| (k.as_str(), *v)).collect()
        };
        let shown = rows.len().min(top);
        for (key, n) in rows.iter().take(shown) {
            out.push_str(&format!("  {n:>10}  {key}\n"));
        }
        if rows.len() > shown {
            out.push_str(&format!("  ... {} more\n", rows.len() - shown));
        }
    };
    table(
        "cross-tenant attempts by tenant",
        &s.cross_tenant_by_tenant,
        true,
    );
    table(
        "cross-tenant attempts by source",
        &s.cross_tenant_by_source,
        true,
    );
    table(
        "cross-tenant attempts by reason",
        &s.cross_tenant_by_reason,
        true,
    );
    table("denials by reason", &s.denials_by_reason, true);
    table(
        "would-be denials in shadow mode by reason",
        &s.shadow_by_reason,
        true,
    );
    table("denials by hour (UTC)", &s.denials_by_hour, false);
    table(
        "cross-tenant attempts by hour (UTC)",
        &s.cross_tenant_by_hour,
        false,
    );
    out
}
