//! `tenant-guard bill`: the command line.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::process::ExitCode;

use crate::bill::ledger::{Ledger, Split};
use crate::bill::render::{self, Format};
use crate::bill::{month_bounds, read, OnBad};

pub const USAGE: &str = "\
tenant-guard bill: the month's bill from tenant-guard's request records

USAGE:
  tenant-guard bill --month YYYY-MM [--per-user] [--per-model] [--format table|json|csv]
                    [--skip-bad] [FILE...]
      Per tenant (and per user, per model), for one calendar month in UTC: admitted requests,
      refused requests (apart), input, cached, cache-write, output and reasoning tokens, and
      US dollars: the exact sum of the records' cost_usd. Requests charged on the filter's
      estimate (usage_source \"estimate\") are marked and summed apart as well.
      FILE: an Envoy log (the filter's records after Envoy's prefix, which gives their time),
      a JSON access log of the filter state with a time member (start_time: %START_TIME%), or
      JSON lines of records; audit lines in it are recognised and not billed. Several files
      are read in turn (rotated logs; never the same requests twice); without FILE (or with
      -) standard input is read. Any size, in a stream.
      A malformed record stops the bill with its file and line number (exit status 2);
      --skip-bad leaves malformed records out instead, reports them on standard error and
      says how many the bill left out.
";

/// Runs `tenant-guard bill ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("tenant-guard bill: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let mut month = None;
    let mut split = Split::default();
    let mut format = Format::Table;
    let mut on_bad = OnBad::Fail;
    let mut files: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--month" => month = Some(it.next().ok_or("--month needs a month: YYYY-MM")?),
            "--per-user" => split.user = true,
            "--per-model" => split.model = true,
            "--skip-bad" => on_bad = OnBad::Skip,
            "--format" => {
                format = match it.next().map(String::as_str) {
                    Some("table") => Format::Table,
                    Some("json") => Format::Json,
                    Some("csv") => Format::Csv,
                    Some(other) => {
                        return Err(format!("--format: table, json or csv, not {other:?}"))
                    }
                    None => return Err("--format needs table, json or csv".into()),
                }
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            file => files.push(file),
        }
    }
    let month = month.ok_or("--month YYYY-MM is required (the calendar month to bill, UTC)")?;
    let (from, until) = month_bounds(month)
        .ok_or_else(|| format!("--month: not a calendar month YYYY-MM: {month:?}"))?;
    if files.is_empty() {
        files.push("-");
    }
    let mut ledger = Ledger::new(from, until, split);
    let mut bad = Vec::new();
    for file in files {
        if file == "-" {
            let stdin = io::stdin();
            let input = BufReader::with_capacity(1 << 16, stdin.lock());
            read(&mut ledger, input, "(standard input)", on_bad, &mut bad)?;
        } else {
            let opened = File::open(file).map_err(|e| format!("{file}: {e}"))?;
            let input = BufReader::with_capacity(1 << 16, opened);
            read(&mut ledger, input, file, on_bad, &mut bad)?;
        }
    }
    for found in &bad {
        eprintln!("tenant-guard bill: skipped {found}");
    }
    if ledger.counts.skipped > 0 {
        eprintln!(
            "tenant-guard bill: {} malformed record(s) skipped: the bill leaves them out",
            ledger.counts.skipped
        );
    }
    if ledger.counts.too_long > 0 {
        eprintln!(
            "tenant-guard bill: {} line(s) longer than 1 MiB skipped (no record is that long)",
            ledger.counts.too_long
        );
    }
    let text = match format {
        Format::Table => render::table(&ledger, month)?,
        Format::Json => render::json(&ledger, month)? + "\n",
        Format::Csv => render::csv(&ledger),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
