//! The command line on generated logs: verify pinpoints deleted, edited and reordered lines;
//! query and summary agree with counts taken independently of the tool.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use tenant_guard_cli::audit::generate::{self, ChainWriter, Claimed, Event};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-guard");
/// The former name, kept as an alias for one release.
const ALIAS: &str = env!("CARGO_BIN_EXE_tenant-guard-audit");
/// 2026-11-29T00:00:00Z
const T0: i64 = 1_795_910_400_000;

struct TempLog(PathBuf);

impl TempLog {
    fn new(lines: &[String]) -> TempLog {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "tenant-guard-cli-audit-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
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

fn generated(records: u64, chains: usize) -> Vec<String> {
    let mut out = Vec::new();
    generate::log(&mut out, records, chains, T0, 1000).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `tenant-guard audit ARGS`.
fn run(args: &[&str]) -> Output {
    Command::new(BIN).arg("audit").args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The record of a log line, parsed independently of the tool.
fn record(line: &str) -> Option<Value> {
    let at = line.find(r#"{"type":"tenant_guard.audit""#)?;
    serde_json::from_str(&line[at..]).ok()
}

/// Line indexes (0-based) of the records of `chain`, in file order.
fn chain_lines(lines: &[String], chain: &str) -> Vec<usize> {
    (0..lines.len())
        .filter(|&i| record(&lines[i]).is_some_and(|r| r["chain"] == chain))
        .collect()
}

fn first_chain(lines: &[String]) -> String {
    lines.iter().find_map(|l| record(l)).unwrap()["chain"]
        .as_str()
        .unwrap()
        .to_string()
}

// === verify ===

#[test]
fn an_untouched_log_verifies() {
    let lines = generated(3000, 3);
    let log = TempLog::new(&lines);
    let out = run(&["verify", log.path()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(": intact, ").count(), 3, "{text}");
    assert!(text.contains("OK: 3000 records in 3 chain(s)"), "{text}");
}

#[test]
fn a_deleted_line_is_pinpointed() {
    let mut lines = generated(2000, 3);
    let chain = first_chain(&lines);
    let ours = chain_lines(&lines, &chain);
    let (deleted, next) = (ours[100], ours[101]);
    lines.remove(deleted);
    let log = TempLog::new(&lines);
    let out = run(&["verify", log.path()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // `next` moved up by one line; line numbers are 1-based.
    assert!(
        text.contains(&format!("chain {chain}: BROKEN at line {} (seq 101)", next)),
        "{text}"
    );
    assert!(
        text.contains("expected seq 100 after seq 99: 1 record(s) missing (deleted)"),
        "{text}"
    );
    assert!(text.contains("FAILED: 1 of 3 chain(s) broken"), "{text}");
}

#[test]
fn an_edited_line_is_pinpointed() {
    let mut lines = generated(2000, 3);
    let chain = first_chain(&lines);
    let edited = chain_lines(&lines, &chain)[500];
    let before = lines[edited].clone();
    let tenant = record(&before).unwrap()["tenant"]
        .as_str()
        .unwrap()
        .to_string();
    lines[edited] = before.replacen(
        &format!(r#""tenant":"{tenant}""#),
        r#""tenant":"someone-else""#,
        1,
    );
    assert_ne!(lines[edited], before);
    let log = TempLog::new(&lines);
    let text = stdout(&run(&["verify", log.path()]));
    assert!(
        text.contains(&format!(
            "chain {chain}: BROKEN at line {} (seq 500): the record does not match its hash: this line was edited",
            edited + 1
        )),
        "{text}"
    );
}

#[test]
fn an_edited_and_rehashed_line_breaks_the_next_link() {
    let mut writer = ChainWriter::new("00000000000000e1");
    let event = |reason: &'static str| Event {
        time_ms: T0,
        event: "deny",
        tenant: Some("acme"),
        user: Some("alice"),
        provider: None,
        claimed: Claimed::default(),
        method: "GET",
        path: "/v1/models",
        path_sent: None,
        source: None,
        request_id: "0123456789abcdef0123456789abcdef",
        client_request_id: None,
        decision: "deny",
        reason,
        detail: None,
    };
    let mut lines = vec![writer.start(T0, &"ab".repeat(32))];
    for _ in 0..5 {
        lines.push(writer.record(&event("invalid_token")));
    }
    // A forger rewrites record 3 and gives it a correct hash of its own.
    let mut forger = ChainWriter::new("00000000000000e1");
    forger.seq = 3;
    forger.prev = record(&lines[2]).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    lines[3] = forger.record(&event("tenant_suspended"));
    let log = TempLog::new(&lines);
    let text = stdout(&run(&["verify", log.path()]));
    assert!(
        text.contains("chain 00000000000000e1: BROKEN at line 5 (seq 4): prev is not the hash of the chain's previous record (line 4)"),
        "{text}"
    );
}

#[test]
fn reordered_lines_are_pinpointed() {
    let mut lines = generated(2000, 3);
    let chain = first_chain(&lines);
    let ours = chain_lines(&lines, &chain);
    let (a, b) = (ours[300], ours[301]);
    lines.swap(a, b);
    let log = TempLog::new(&lines);
    let text = stdout(&run(&["verify", log.path()]));
    assert!(
        text.contains(&format!(
            "chain {chain}: BROKEN at line {} (seq 301): expected seq 300 after seq 299; it comes later, at line {}: lines out of order",
            a + 1,
            b + 1
        )),
        "{text}"
    );
}

#[test]
fn a_rotated_log_starts_mid_chain_and_still_verifies() {
    let lines = generated(2000, 2);
    let rest = lines[700..].to_vec();
    let log = TempLog::new(&rest);
    let out = run(&["verify", log.path()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("starts mid-chain at seq").count(), 2, "{text}");
}

#[test]
fn a_mangled_record_is_reported_and_other_lines_are_ignored() {
    let mut lines = generated(50, 1);
    lines.insert(
        10,
        r#"[info] {"type":"tenant_guard.audit","chain":"#.to_string(),
    );
    lines.insert(11, "plain text, no record".to_string());
    let log = TempLog::new(&lines);
    let out = run(&["verify", log.path()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("line 11: unreadable audit record"), "{text}");
}

// === query ===

fn jsonl(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn query_filters_by_tenant_reason_user_and_time() {
    let lines = generated(5000, 3);
    let records: Vec<Value> = lines.iter().filter_map(|l| record(l)).collect();
    let log = TempLog::new(&lines);

    let acme = jsonl(&run(&["query", "--tenant", "acme", log.path()]));
    let expected = records
        .iter()
        .filter(|r| r["tenant"] == "acme" && r["event"] != "start")
        .count();
    assert!(expected > 100);
    assert_eq!(acme.len(), expected);
    assert!(acme.iter().all(|r| r["tenant"] == "acme"));

    let hits = jsonl(&run(&[
        "query",
        "--reason",
        "cross_tenant_path",
        "--reason",
        "tenant_header_mismatch",
        "--user",
        "user-7",
        log.path(),
    ]));
    let expected = records
        .iter()
        .filter(|r| {
            (r["reason"] == "cross_tenant_path" || r["reason"] == "tenant_header_mismatch")
                && r["user"] == "user-7"
        })
        .count();
    assert!(expected > 0);
    assert_eq!(hits.len(), expected);

    // One record a second from T0 (after the start records): [00:10, 00:20) holds 600.
    let window = jsonl(&run(&[
        "query",
        "--since",
        "2026-11-29T00:10",
        "--until",
        "2026-11-29T00:20:00.000Z",
        log.path(),
    ]));
    assert_eq!(window.len(), 600);
    assert!(window
        .iter()
        .all(|r| r["time"].as_str().unwrap().starts_with("2026-11-29T00:1")));
}

#[test]
fn query_output_is_the_records_as_logged() {
    let lines = generated(300, 2);
    let log = TempLog::new(&lines);
    let out = stdout(&run(&["query", "--cross-tenant", log.path()]));
    for line in out.lines() {
        assert!(lines.iter().any(|l| l.ends_with(line)), "{line}");
    }
    // So the query's output verifies as a log of its own would not (records are missing),
    // but every record still carries its hash.
    assert!(out.lines().all(|l| l.contains(r#","hash":""#)));
}

#[test]
fn bad_arguments_exit_with_2() {
    assert_eq!(
        run(&["query", "--since", "yesterday"]).status.code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["verify", "/nonexistent/file"]).status.code(), Some(2));
}

// === summary ===

#[test]
fn summary_counts_agree_with_the_records() {
    let lines = generated(20_000, 4);
    let records: Vec<Value> = lines.iter().filter_map(|l| record(l)).collect();
    let log = TempLog::new(&lines);
    let out = run(&["summary", "--json", log.path()]);
    assert!(out.status.success());
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cross = [
        "cross_tenant_path",
        "cross_tenant_namespace",
        "tenant_header_mismatch",
        "tenant_provider_mismatch",
        "provider_object_not_found",
        "tenant_namespace_conflict",
    ];
    let is_cross = |r: &&Value| {
        r["event"] == "cross_tenant" || cross.contains(&r["reason"].as_str().unwrap_or(""))
    };
    assert_eq!(s["records"], 20_000);
    assert_eq!(s["starts"], 4);
    let acme_cross = records
        .iter()
        .filter(is_cross)
        .filter(|r| r["tenant"] == "acme")
        .count();
    assert_eq!(s["cross_tenant_by_tenant"]["acme"], acme_cross as u64);
    let denied_quota = records
        .iter()
        .filter(|r| r["decision"] == "deny" && r["reason"] == "request_quota_exceeded")
        .count();
    assert_eq!(
        s["denials_by_reason"]["request_quota_exceeded"],
        denied_quota as u64
    );
    let shadow = records.iter().filter(|r| r["event"] == "shadow").count();
    assert_eq!(
        s["shadow_by_reason"]["request_quota_exceeded"],
        shadow as u64
    );
    // Per hour: one record a second from midnight, so hour 00 is full.
    let hour0 = records
        .iter()
        .filter(|r| {
            r["decision"] == "deny" && r["time"].as_str().unwrap().starts_with("2026-11-29T00")
        })
        .count();
    assert_eq!(s["denials_by_hour"]["2026-11-29T00"], hour0 as u64);
    // Sources are counted by address, without the port.
    let by_source = s["cross_tenant_by_source"].as_object().unwrap();
    assert!(by_source
        .keys()
        .all(|k| k.starts_with("10.") && !k.contains(':')));
    let total: u64 = by_source.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, records.iter().filter(is_cross).count() as u64);

    let text = stdout(&run(&["summary", log.path()]));
    assert!(text.contains("cross-tenant attempts by tenant"), "{text}");
    assert!(text.contains("denials by hour (UTC)"), "{text}");
}

#[test]
fn stdin_works_too() {
    let lines = generated(100, 1);
    let log = TempLog::new(&lines);
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .stdin(std::fs::File::open(log.path()).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn query_writes_ocsf_events_on_request() {
    let lines = generated(500, 2);
    let log = TempLog::new(&lines);
    let out = run(&["query", "--ocsf", "--cross-tenant", log.path()]);
    assert!(out.status.success());
    let events = jsonl(&out);
    let raw = jsonl(&run(&["query", "--cross-tenant", log.path()]));
    assert_eq!(events.len(), raw.len());
    assert!(!events.is_empty());
    for (event, record) in events.iter().zip(&raw) {
        assert_eq!(event["class_uid"], 6003);
        assert_eq!(event["status_code"], record["reason"]);
        assert_eq!(event["unmapped"]["hash"], record["hash"]);
    }
    // Start records are chain anchors, not API activity.
    let starts = run(&["query", "--ocsf", "--event", "start", log.path()]);
    assert!(stdout(&starts).is_empty());
}

// === the former name ===

#[test]
fn tenant_guard_audit_is_an_alias_of_tenant_guard_audit() {
    let log = TempLog::new(&generated(200, 2));
    let alias = Command::new(ALIAS)
        .args(["verify", log.path()])
        .output()
        .unwrap();
    let own = run(&["verify", log.path()]);
    assert!(alias.status.success(), "{}", stdout(&alias));
    assert_eq!(alias.status, own.status);
    assert_eq!(stdout(&alias), stdout(&own));
    let bad = Command::new(ALIAS).arg("--bogus").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("tenant-guard-audit: "));
}

// === verify --key-env: keyed chains ===

const AUDIT_KEY: &str = "audit-key-for-the-cli-tests-0123456789";

fn keyed_event(reason: &'static str) -> Event<'static> {
    Event {
        time_ms: T0,
        event: "deny",
        tenant: Some("acme"),
        user: Some("alice"),
        provider: None,
        claimed: Claimed::default(),
        method: "GET",
        path: "/v1/models",
        path_sent: None,
        source: Some("10.0.0.7:5123"),
        request_id: "0123456789abcdef0123456789abcdef",
        client_request_id: None,
        decision: "deny",
        reason,
        detail: None,
    }
}

/// A chain of a start record and `n` denials, written by `writer`.
fn chain_by(mut writer: ChainWriter, n: usize) -> Vec<String> {
    let mut lines = vec![writer.start(T0, &"ab".repeat(32))];
    for _ in 0..n {
        lines.push(writer.record(&keyed_event("invalid_token")));
    }
    lines
}

/// `tenant-guard audit verify --key-env TG_TEST_AUDIT_KEY FILE` with `key` in that variable.
fn verify_keyed(bin: &str, log: &TempLog, key: Option<&str>) -> Output {
    let mut command = Command::new(bin);
    if bin == BIN {
        command.arg("audit");
    }
    command.args(["verify", "--key-env", "TG_TEST_AUDIT_KEY", log.path()]);
    match key {
        Some(key) => command.env("TG_TEST_AUDIT_KEY", key),
        None => command.env_remove("TG_TEST_AUDIT_KEY"),
    };
    command.output().unwrap()
}

#[test]
fn a_keyed_chain_verifies_with_its_key_and_names_it() {
    let lines = chain_by(
        ChainWriter::keyed("00000000000000k1", AUDIT_KEY.as_bytes()),
        4,
    );
    let start = record(&lines[0]).unwrap();
    assert_eq!(
        start["key_fingerprint"].as_str().unwrap().len(),
        16,
        "{start}"
    );
    let log = TempLog::new(&lines);
    for bin in [BIN, ALIAS] {
        let out = verify_keyed(bin, &log, Some(AUDIT_KEY));
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        assert!(stdout(&out).contains("chain 00000000000000k1: intact, 5 records"));
    }
    // Without the key the tool says the chain is keyed, and does not pass it.
    let out = run(&["verify", log.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("the chain is keyed (key "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_keyed_file_rewritten_and_rechained_without_the_key_fails() {
    let genuine = chain_by(
        ChainWriter::keyed("00000000000000k2", AUDIT_KEY.as_bytes()),
        4,
    );
    // The forger edits a record and rebuilds the whole chain as an unkeyed one: it verifies
    // without a key, and not with it.
    let mut rebuilt = vec![];
    let mut writer = ChainWriter::new("00000000000000k2");
    rebuilt.push(writer.start(T0, &"ab".repeat(32)));
    for reason in [
        "invalid_token",
        "tenant_suspended",
        "invalid_token",
        "invalid_token",
    ] {
        rebuilt.push(writer.record(&keyed_event(reason)));
    }
    let log = TempLog::new(&rebuilt);
    assert_eq!(run(&["verify", log.path()]).status.code(), Some(0));
    let out = verify_keyed(BIN, &log, Some(AUDIT_KEY));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("BROKEN at line 1 (seq 0): the start record names no key"),
        "{}",
        stdout(&out)
    );
    // Re-chained under another key: named, and refused.
    let mut other = ChainWriter::keyed("00000000000000k2", b"another-key-0123456789abcdef0123");
    let mut rekeyed = vec![other.start(T0, &"ab".repeat(32))];
    rekeyed.push(other.record(&keyed_event("tenant_suspended")));
    let log = TempLog::new(&rekeyed);
    let text = stdout(&verify_keyed(BIN, &log, Some(AUDIT_KEY)));
    assert!(
        text.contains("names key ") && text.contains("not the given key"),
        "{text}"
    );
    // The genuine start kept, a record edited and re-hashed without the key: edited.
    let mut edited = genuine.clone();
    let mut forger = ChainWriter::new("00000000000000k2");
    forger.seq = 2;
    forger.prev = record(&genuine[1]).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    edited[2] = forger.record(&keyed_event("tenant_suspended"));
    let log = TempLog::new(&edited);
    let text = stdout(&verify_keyed(BIN, &log, Some(AUDIT_KEY)));
    assert!(
        text.contains("BROKEN at line 3 (seq 2): the record does not match its hash"),
        "{text}"
    );
}

#[test]
fn a_key_variable_that_is_not_set_is_an_error() {
    let log = TempLog::new(&generated(3, 1));
    let out = verify_keyed(BIN, &log, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("environment variable TG_TEST_AUDIT_KEY is not set"));
    // An unkeyed log verified with a key: not keyed with it.
    let out = verify_keyed(BIN, &log, Some(AUDIT_KEY));
    assert_eq!(out.status.code(), Some(1));
}
