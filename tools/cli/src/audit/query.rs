//! `query`: the records that match every filter given, written out as JSON lines: each record's
//! text exactly as logged (so its hash still verifies), or as an OCSF API Activity event.

use std::io::{self, BufRead, Write};

use crate::audit::lines::{Line, Lines};
use crate::audit::record::{self, Record};
use crate::audit::time;

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub tenants: Vec<String>,
    pub users: Vec<String>,
    pub reasons: Vec<String>,
    pub events: Vec<String>,
    pub decisions: Vec<String>,
    pub sources: Vec<String>,
    pub chains: Vec<String>,
    pub cross_tenant: bool,
    /// Milliseconds since the epoch, inclusive.
    pub since: Option<i64>,
    /// Milliseconds since the epoch, exclusive.
    pub until: Option<i64>,
}

impl Filter {
    pub fn matches(&self, rec: &Record) -> bool {
        fn any(wanted: &[String], value: Option<&str>) -> bool {
            wanted.is_empty() || value.is_some_and(|v| wanted.iter().any(|w| w == v))
        }
        // Start records hold no request: only a query for them shows them.
        if self.events.is_empty() && rec.event == "start" {
            return false;
        }
        if !(any(&self.tenants, rec.tenant.as_deref())
            && any(&self.users, rec.user.as_deref())
            && any(&self.reasons, rec.reason.as_deref())
            && any(&self.events, Some(&rec.event))
            && any(&self.decisions, rec.decision.as_deref())
            && any(&self.sources, rec.source_ip())
            && any(&self.chains, Some(&rec.chain)))
        {
            return false;
        }
        if self.cross_tenant && !rec.is_cross_tenant() {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(at) = time::parse_ms(&rec.time) else {
                return false;
            };
            if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at >= u) {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub records: u64,
    pub matched: u64,
    pub unreadable: u64,
}

/// How matching records are written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The record's text as logged.
    #[default]
    AsLogged,
    /// An OCSF API Activity event (start records are left out).
    Ocsf,
}

pub fn query(
    input: impl BufRead,
    filter: &Filter,
    format: Format,
    out: &mut impl Write,
) -> io::Result<Counts> {
    let mut lines = Lines::new(input);
    let mut counts = Counts::default();
    while let Some((_, line)) = lines.next_line()? {
        let Line::Text(line) = line else { continue };
        let Some(text) = record::locate(line) else {
            continue;
        };
        let Ok(text) = text else {
            counts.unreadable += 1;
            continue;
        };
        let Ok(rec) = record::parse(text) else {
            counts.unreadable += 1;
            continue;
        };
        counts.records += 1;
        if filter.matches(&rec) {
            match format {
                Format::AsLogged => out.write_all(text)?,
                Format::Ocsf => {
                    let value: serde_json::Value = serde_json::from_slice(text)?;
                    let Some(event) = crate::audit::ocsf::event(&value) else {
                        continue;
                    };
                    serde_json::to_writer(&mut *out, &event)?;
                }
            }
            counts.matched += 1;
            out.write_all(b"\n")?;
        }
    }
    counts.lines = lines.number;
    Ok(counts)
}
