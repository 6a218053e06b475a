//! `tenant-guard bill`: the month's bill from the filter's request records: per tenant (and
//! per user, per model), requests and refusals, input, cached, cache-write, output and
//! reasoning tokens, and US dollars summed exactly; requests charged on the filter's estimate
//! are marked. Reads Envoy logs and JSON access logs of any size as a stream.

pub mod command;
pub mod generate;
pub mod ledger;
pub mod record;
pub mod render;

use std::io::BufRead;

use crate::audit::lines::{Line as RawLine, Lines};
use crate::bill::ledger::Ledger;
use crate::bill::record::Line;

/// What to do with a line that claims to be a record but cannot be billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBad {
    /// Stop: the bill would be wrong (the default).
    Fail,
    /// Leave it out, count it, and report it.
    Skip,
}

/// A malformed record, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub source: String,
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.message)
    }
}

/// Bad lines reported one by one under `--skip-bad`; the rest are only counted.
pub const MAX_REPORTED: usize = 20;

/// Reads one input (named `source` in messages) into the ledger. `Err` is an input that
/// cannot be read, or (with [`OnBad::Fail`]) the first malformed record; with
/// [`OnBad::Skip`] malformed records go to `bad` (the first [`MAX_REPORTED`]) and the count.
pub fn read<R: BufRead>(
    ledger: &mut Ledger,
    input: R,
    source: &str,
    on_bad: OnBad,
    bad: &mut Vec<Bad>,
) -> Result<(), String> {
    let mut lines = Lines::new(input);
    loop {
        let next = lines.next_line().map_err(|e| format!("{source}: {e}"))?;
        let Some((number, line)) = next else {
            return Ok(());
        };
        ledger.counts.lines += 1;
        let text = match line {
            RawLine::Text(text) => text,
            RawLine::TooLong => {
                ledger.counts.too_long += 1;
                continue;
            }
        };
        let result = match record::classify(text) {
            Ok(Line::Record(entry)) => ledger.add(&entry),
            Ok(Line::Audit) => {
                ledger.counts.audit_lines += 1;
                Ok(())
            }
            Ok(Line::Undecided) => {
                ledger.counts.undecided += 1;
                Ok(())
            }
            Ok(Line::Other) => Ok(()),
            Err(message) => Err(message),
        };
        if let Err(message) = result {
            let found = Bad {
                source: source.to_string(),
                line: number,
                message,
            };
            match on_bad {
                OnBad::Fail => return Err(found.to_string()),
                OnBad::Skip => {
                    ledger.counts.skipped += 1;
                    if bad.len() < MAX_REPORTED {
                        bad.push(found);
                    }
                }
            }
        }
    }
}

/// `[from, until)` of a calendar month `YYYY-MM`, in milliseconds since the epoch (UTC).
pub fn month_bounds(month: &str) -> Option<(i64, i64)> {
    let (year, mon) = month.split_once('-')?;
    if year.len() != 4 || mon.len() != 2 {
        return None;
    }
    let y: i64 = year.parse().ok()?;
    let m: i64 = mon.parse().ok()?;
    if !(1..=12).contains(&m) || !year.bytes().chain(mon.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let from = crate::audit::time::parse_ms(&format!("{y:04}-{m:02}-01"))?;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let until = crate::audit::time::parse_ms(&format!("{ny:04}-{nm:02}-01"))?;
    Some((from, until))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::time::parse_ms;
    use crate::bill::ledger::Split;

    #[test]
    fn months_are_calendar_months_in_utc() {
        assert_eq!(
            month_bounds("2026-12"),
            Some((
                parse_ms("2026-12-01").unwrap(),
                parse_ms("2027-01-01").unwrap()
            ))
        );
        assert_eq!(
            month_bounds("2028-02"),
            Some((
                parse_ms("2028-02-01").unwrap(),
                parse_ms("2028-03-01").unwrap()
            ))
        );
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-12",
            "2026-12-01",
            "december",
            "+026-12",
        ] {
            assert_eq!(month_bounds(bad), None, "{bad}");
        }
    }

    const GOOD: &str = r#"[2026-12-07 13:57:38.123][17][info][wasm] wasm log: {"type":"tenant_guard.request","tenant":"acme","user":"alice","decision":"allow","reason":"ok","model":"gpt-4o","input_tokens":10,"output_tokens":2,"cost_usd":"0.001","usage_source":"json"}"#;

    fn ledger() -> Ledger {
        let (from, until) = month_bounds("2026-12").unwrap();
        Ledger::new(from, until, Split::default())
    }

    #[test]
    fn a_malformed_record_stops_the_bill_with_its_line_number() {
        let input = format!(
            "{GOOD}\n[2026-12-07 13:57:39.000][17][info][main] unrelated\n{}\n{GOOD}\n",
            GOOD.replace("0.001", "0,001")
        );
        let mut l = ledger();
        let mut bad = Vec::new();
        let err = read(&mut l, input.as_bytes(), "envoy.log", OnBad::Fail, &mut bad).unwrap_err();
        assert!(err.starts_with("envoy.log:3: cost_usd"), "{err}");

        let mut l = ledger();
        read(&mut l, input.as_bytes(), "envoy.log", OnBad::Skip, &mut bad).unwrap();
        assert_eq!(l.counts.skipped, 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert_eq!(l.total().unwrap().requests, 2);
        assert_eq!(l.counts.lines, 4);
    }

    #[test]
    fn audit_lines_and_envoy_lines_are_counted_not_billed() {
        let input = format!(
            "{GOOD}\n[2026-12-07 13:57:38.124][17][info][wasm] {{\"type\":\"tenant_guard.audit\",\"chain\":\"a\",\"seq\":0}}\n{{\"decision\":null,\"status\":\"404\"}}\n"
        );
        let mut l = ledger();
        read(&mut l, input.as_bytes(), "-", OnBad::Fail, &mut Vec::new()).unwrap();
        assert_eq!(l.counts.audit_lines, 1);
        assert_eq!(l.counts.undecided, 1);
        assert_eq!(l.counts.records, 1);
    }
}
