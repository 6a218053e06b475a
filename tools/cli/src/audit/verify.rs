//! `verify`: every chain of a log, followed by its `chain` id in file order (chains of several
//! workers interleave in one file).
//!
//! Each record must recompute to its `hash`, carry the previous record's hash as `prev` and the
//! next `seq`. The first link that does not hold breaks the chain: it is reported with its line
//! number and what it looks like (a line edited, deleted, or out of order), and the rest of that
//! chain is only watched for the record that went missing (to tell a reordering from a
//! deletion). A chain whose first record in the file is not seq 0 starts mid-chain (a rotated
//! log): reported, and verified from there on. Memory holds one small state per chain.

use std::collections::HashMap;
use std::io::{self, BufRead};

use crate::audit::lines::{Line, Lines};
use crate::audit::record::{self, ZERO_HASH};

/// How a chain broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The record's text does not hash to its `hash`: the line was edited.
    Edited,
    /// `seq` is the next one but `prev` is not the previous record's hash: the previous line was
    /// edited (and re-hashed) or replaced.
    PrevMismatch { previous_line: u64 },
    /// Records are missing between the previous record and this one.
    Missing { after_seq: u64, count: u64 },
    /// A record that belongs earlier (its seq was already passed).
    Backwards { after_seq: u64 },
    /// A first record (seq 0) whose `prev` is not zeros.
    BadStart,
    /// The marker is there but the record cannot be read (its chain is unknown).
    Unreadable(String),
    /// Verified with a key, the chain's start record names another key (or none: the chain
    /// is not keyed, as a chain rebuilt without the key would be).
    KeyMismatch { found: Option<String> },
    /// Verified without a key, the chain's start record says it is keyed.
    NeedsKey { fingerprint: String },
}

/// The key a keyed chain is verified with.
#[derive(Debug, Clone)]
pub struct Key {
    pub bytes: Vec<u8>,
    /// The first 16 hex digits of its SHA-256, as start records name it.
    pub fingerprint: String,
}

impl Key {
    pub fn new(bytes: Vec<u8>) -> Key {
        Key {
            fingerprint: record::key_fingerprint(&bytes),
            bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub line: u64,
    pub seq: Option<u64>,
    pub fault: Fault,
    /// For `Missing`: the line where the missing record turned up later (the lines were
    /// reordered, not deleted).
    pub found_later_at: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Chain {
    pub id: String,
    pub first_line: u64,
    pub first_seq: u64,
    pub last_line: u64,
    pub last_seq: u64,
    pub last_hash: String,
    pub records: u64,
    pub broken: Option<Break>,
    /// While broken: the seq and prev of the record that should have come next.
    awaiting: Option<(u64, String)>,
}

impl Chain {
    pub fn starts_mid_chain(&self) -> bool {
        self.first_seq != 0
    }
}

#[derive(Debug, Default)]
pub struct Report {
    /// Chains in the order they first appear.
    pub chains: Vec<Chain>,
    /// Records whose chain cannot be told (the marker is there, the JSON is not).
    pub unreadable: Vec<Break>,
    pub lines: u64,
    pub records: u64,
    pub too_long_lines: u64,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.unreadable.is_empty() && self.chains.iter().all(|c| c.broken.is_none())
    }
}

/// Reads a whole log; with `key`, every chain must be keyed with it.
pub fn verify(input: impl BufRead, key: Option<Key>) -> io::Result<Report> {
    let mut lines = Lines::new(input);
    let mut verifier = Verifier {
        key,
        ..Verifier::default()
    };
    while let Some((number, line)) = lines.next_line()? {
        match line {
            Line::Text(text) => verifier.line(number, text),
            Line::TooLong => verifier.report.too_long_lines += 1,
        }
    }
    verifier.report.lines = lines.number;
    Ok(verifier.finish())
}

#[derive(Default)]
pub struct Verifier {
    report: Report,
    index: HashMap<String, usize>,
    key: Option<Key>,
}

impl Verifier {
    pub fn line(&mut self, number: u64, line: &[u8]) {
        let text = match record::locate(line) {
            None => return,
            Some(Ok(text)) => text,
            Some(Err(why)) => return self.unreadable(number, why),
        };
        let rec = match record::parse(text) {
            Ok(rec) => rec,
            Err(why) => return self.unreadable(number, why),
        };
        self.report.records += 1;
        let key = self.key.as_ref().map(|k| k.bytes.as_slice());
        let intact = record::recompute(text, &rec.prev, key).as_deref() == Some(rec.hash.as_ref());
        let slot = match self.index.get(rec.chain.as_ref()) {
            Some(&slot) => slot,
            None => {
                let slot = self.report.chains.len();
                self.index.insert(rec.chain.to_string(), slot);
                self.report.chains.push(Chain {
                    id: rec.chain.to_string(),
                    first_line: number,
                    first_seq: rec.seq,
                    last_line: number,
                    last_seq: rec.seq,
                    last_hash: rec.hash.to_string(),
                    records: 1,
                    broken: None,
                    awaiting: None,
                });
                let chain = self.report.chains.last_mut();
                if let Some(chain) = chain {
                    let named = rec.key_fingerprint.as_deref();
                    let fault = match (&self.key, named) {
                        // Which key (if any) comes before whether the text matches it.
                        (Some(key), named) if rec.seq == 0 && named != Some(&key.fingerprint) => {
                            Some(Fault::KeyMismatch {
                                found: named.map(str::to_string),
                            })
                        }
                        (None, Some(fingerprint)) => Some(Fault::NeedsKey {
                            fingerprint: fingerprint.to_string(),
                        }),
                        _ => None,
                    };
                    let fault = if fault.is_some() {
                        fault
                    } else if !intact {
                        Some(Fault::Edited)
                    } else if rec.seq == 0 && rec.prev != ZERO_HASH {
                        Some(Fault::BadStart)
                    } else {
                        None
                    };
                    if let Some(fault) = fault {
                        chain.broken = Some(Break {
                            line: number,
                            seq: Some(rec.seq),
                            fault,
                            found_later_at: None,
                        });
                    }
                }
                return;
            }
        };
        let Some(chain) = self.report.chains.get_mut(slot) else {
            return;
        };
        chain.records += 1;
        if chain.broken.is_some() {
            // Only watch for the record that went missing.
            if let (Some((seq, prev)), Some(b)) = (&chain.awaiting, &mut chain.broken) {
                if rec.seq == *seq && rec.prev == prev.as_str() && b.found_later_at.is_none() {
                    b.found_later_at = Some(number);
                    chain.awaiting = None;
                }
            }
            return;
        }
        let fault = if !intact {
            Some(Fault::Edited)
        } else if rec.seq == chain.last_seq.wrapping_add(1) {
            (rec.prev != chain.last_hash.as_str()).then_some(Fault::PrevMismatch {
                previous_line: chain.last_line,
            })
        } else if rec.seq > chain.last_seq {
            Some(Fault::Missing {
                after_seq: chain.last_seq,
                count: rec.seq - chain.last_seq - 1,
            })
        } else {
            Some(Fault::Backwards {
                after_seq: chain.last_seq,
            })
        };
        match fault {
            None => {
                chain.last_line = number;
                chain.last_seq = rec.seq;
                chain.last_hash = rec.hash.to_string();
            }
            Some(fault) => {
                if matches!(fault, Fault::Missing { .. }) {
                    chain.awaiting = Some((chain.last_seq + 1, chain.last_hash.clone()));
                }
                chain.broken = Some(Break {
                    line: number,
                    seq: Some(rec.seq),
                    fault,
                    found_later_at: None,
                });
            }
        }
    }

    fn unreadable(&mut self, number: u64, why: String) {
        self.report.unreadable.push(Break {
            line: number,
            seq: None,
            fault: Fault::Unreadable(why),
            found_later_at: None,
        });
    }

    pub fn finish(self) -> Report {
        self.report
    }
}

/// One line of the report for a break.
pub fn describe(chain: Option<&Chain>, b: &Break) -> String {
    let seq = b.seq.map(|s| format!(" (seq {s})")).unwrap_or_default();
    let what = match &b.fault {
        Fault::Edited => "the record does not match its hash: this line was edited".to_string(),
        Fault::PrevMismatch { previous_line } => format!(
            "prev is not the hash of the chain's previous record (line {previous_line}): that line was edited or replaced"
        ),
        Fault::Missing { after_seq, count } => match b.found_later_at {
            Some(at) => format!(
                "expected seq {} after seq {after_seq}; it comes later, at line {at}: lines out of order",
                after_seq + 1
            ),
            None => format!(
                "expected seq {} after seq {after_seq}: {count} record(s) missing (deleted)",
                after_seq + 1
            ),
        },
        Fault::Backwards { after_seq } => format!(
            "seq goes back after seq {after_seq}: a line out of order or repeated"
        ),
        Fault::BadStart => "seq 0 with a prev that is not zeros".to_string(),
        Fault::Unreadable(why) => format!("unreadable audit record: {why}"),
        Fault::KeyMismatch { found: None } => {
            "the start record names no key: the chain is not keyed with the given key (rebuilt \
             without it?)"
                .to_string()
        }
        Fault::KeyMismatch { found: Some(f) } => format!(
            "the start record names key {f}, not the given key: the chain was written, or \
             rebuilt, under another key"
        ),
        Fault::NeedsKey { fingerprint } => format!(
            "the chain is keyed (key {fingerprint}): verify it with --key-env VAR, the variable \
             holding its key"
        ),
    };
    match chain {
        Some(c) => format!("chain {}: BROKEN at line {}{seq}: {what}", c.id, b.line),
        None => format!("line {}: {what}", b.line),
    }
}

/// The report as text, one line per chain, then the verdict.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for chain in &report.chains {
        if chain.starts_mid_chain() {
            out.push_str(&format!(
                "chain {}: starts mid-chain at seq {} (line {}): an earlier part of the log is elsewhere (rotated?); verified from there\n",
                chain.id, chain.first_seq, chain.first_line
            ));
        }
        match &chain.broken {
            Some(b) => {
                out.push_str(&describe(Some(chain), b));
                out.push('\n');
            }
            None => out.push_str(&format!(
                "chain {}: intact, {} records, seq {}-{}, lines {}-{}, last hash {}\n",
                chain.id,
                chain.records,
                chain.first_seq,
                chain.last_seq,
                chain.first_line,
                chain.last_line,
                chain.last_hash
            )),
        }
    }
    for b in &report.unreadable {
        out.push_str(&describe(None, b));
        out.push('\n');
    }
    if report.too_long_lines > 0 {
        out.push_str(&format!(
            "{} line(s) longer than {} bytes skipped\n",
            report.too_long_lines,
            crate::audit::lines::MAX_LINE
        ));
    }
    let broken = report.chains.iter().filter(|c| c.broken.is_some()).count();
    out.push_str(&if report.intact() {
        format!(
            "OK: {} records in {} chain(s), {} lines read: every chain intact\n",
            report.records,
            report.chains.len(),
            report.lines
        )
    } else {
        format!(
            "FAILED: {broken} of {} chain(s) broken, {} unreadable record(s); {} records, {} lines read\n",
            report.chains.len(),
            report.unreadable.len(),
            report.records,
            report.lines
        )
    });
    out
}
