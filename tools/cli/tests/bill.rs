//! `tenant-guard bill` on generated Envoy logs (records written by the filter's own record
//! code): the totals equal sums taken here from the records, independently of the tool.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use tenant_guard::policy::cost::Cost;
use tenant_guard_cli::bill::generate;

const BIN: &str = env!("CARGO_BIN_EXE_tenant-guard");
/// 2026-12-01T00:00:00Z
const DECEMBER: i64 = 1_796_083_200_000;

struct TempLog(PathBuf);

impl TempLog {
    fn new(text: &[u8]) -> TempLog {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "tenant-guard-cli-bill-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text).unwrap();
        TempLog(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn bill(args: &[&str]) -> Output {
    Command::new(BIN).arg("bill").args(args).output().unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = bill(&[args, &["--format", "json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[derive(Default, Debug, PartialEq)]
struct Sums {
    requests: u64,
    refused: u64,
    input: u64,
    cached: u64,
    written: u64,
    output: u64,
    reasoning: u64,
    pico: u128,
    estimated: u64,
}

fn sums_of(row: &Value) -> Sums {
    let n = |k: &str| row[k].as_u64().unwrap();
    Sums {
        requests: n("requests"),
        refused: n("refused"),
        input: n("input_tokens"),
        cached: n("cached_input_tokens"),
        written: n("cache_write_tokens"),
        output: n("output_tokens"),
        reasoning: n("reasoning_tokens"),
        pico: Cost::from_decimal_usd(row["cost_usd"].as_str().unwrap())
            .unwrap()
            .pico_usd(),
        estimated: n("estimated_requests"),
    }
}

/// Sums per tenant and model of records `range`, from the generator's records themselves.
fn expected(range: std::ops::Range<u64>) -> BTreeMap<(String, String), Sums> {
    let mut out: BTreeMap<(String, String), Sums> = BTreeMap::new();
    for i in range {
        let r = generate::record(i);
        let key = (
            r.tenant.clone().unwrap(),
            r.model.clone().unwrap_or("(none)".into()),
        );
        let s = out.entry(key).or_default();
        if r.decision == "allow" {
            s.requests += 1;
        } else {
            s.refused += 1;
        }
        s.input += r.input_tokens.unwrap_or(0);
        s.cached += r.cached_input_tokens.unwrap_or(0);
        s.written += r.cache_write_tokens.unwrap_or(0);
        s.output += r.output_tokens.unwrap_or(0);
        s.reasoning += r.reasoning_tokens.unwrap_or(0);
        s.pico += r
            .cost_usd
            .as_deref()
            .map_or(0, |c| Cost::from_decimal_usd(c).unwrap().pico_usd());
        s.estimated += u64::from(r.usage_source == Some("estimate"));
    }
    out
}

#[test]
fn per_model_rows_equal_the_records_sums() {
    let mut text = Vec::new();
    // 3,000 records, one a second from December's start.
    generate::log(&mut text, 3000, DECEMBER, 1000).unwrap();
    let log = TempLog::new(&text);
    let doc = json(&["--month", "2026-12", "--per-model", log.path()]);
    let got: BTreeMap<(String, String), Sums> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                (
                    row["tenant"].as_str().unwrap().to_string(),
                    row["model"].as_str().unwrap().to_string(),
                ),
                sums_of(row),
            )
        })
        .collect();
    let want = expected(0..3000);
    assert_eq!(got, want);
    let total = sums_of(&doc["total"]);
    assert_eq!(total.pico, want.values().map(|s| s.pico).sum::<u128>());
    assert_eq!(total.requests + total.refused, 3000);
    assert_eq!(doc["read"]["records"], 3000);
    assert_eq!(doc["read"]["audit_lines"], 300);
}

#[test]
fn records_across_a_month_boundary_go_to_their_own_month() {
    let mut text = Vec::new();
    // 100 records a minute apart, the first 60 before December.
    generate::log(&mut text, 100, DECEMBER - 60 * 60_000, 60_000).unwrap();
    let log = TempLog::new(&text);
    let november = json(&["--month", "2026-11", log.path()]);
    let december = json(&["--month", "2026-12", log.path()]);
    let sum = |map: BTreeMap<(String, String), Sums>| map.values().map(|s| s.pico).sum::<u128>();
    assert_eq!(sums_of(&november["total"]).pico, sum(expected(0..60)));
    assert_eq!(sums_of(&december["total"]).pico, sum(expected(60..100)));
    assert_eq!(november["read"]["outside_month"], 40);
    assert_eq!(december["read"]["outside_month"], 60);
}

#[test]
fn several_files_and_standard_input_add_up() {
    let mut first = Vec::new();
    generate::log(&mut first, 50, DECEMBER, 1000).unwrap();
    let a = TempLog::new(&first);
    let doc = json(&["--month", "2026-12", a.path(), a.path()]);
    let once = json(&["--month", "2026-12", a.path()]);
    assert_eq!(
        sums_of(&doc["total"]).pico,
        2 * sums_of(&once["total"]).pico
    );
    let mut child = Command::new(BIN)
        .args(["bill", "--month", "2026-12", "--format", "csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&first).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let pico: u128 = text
        .lines()
        .skip(1)
        .map(|line| {
            let cost = line.split(',').nth(10).unwrap();
            Cost::from_decimal_usd(cost).unwrap().pico_usd()
        })
        .sum();
    assert_eq!(pico, sums_of(&once["total"]).pico);
}

#[test]
fn a_bad_line_fails_with_its_number_unless_skipped() {
    let mut text = Vec::new();
    generate::log(&mut text, 5, DECEMBER, 1000).unwrap();
    let mut lines: Vec<String> = String::from_utf8(text)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines[2] = lines[2].replace("\"decision\":\"allow\"", "\"decision\":\"perhaps\"");
    let log = TempLog::new((lines.join("\n") + "\n").as_bytes());
    let out = bill(&["--month", "2026-12", log.path()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: decision", log.path())),
        "{err}"
    );
    let out = bill(&["--month", "2026-12", "--skip-bad", log.path()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":3: decision") && err.contains("1 malformed record(s) skipped"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 malformed record(s) skipped"));
}
