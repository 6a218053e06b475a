//! `tenant-guard audit`: verify, query and summarise tenant-guard audit logs.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;

use crate::audit::query::{self, Filter, Format};
use crate::audit::{summary, time, verify};

pub const USAGE: &str = "\
tenant-guard audit: verify, query and summarise tenant-guard audit logs

USAGE:
  tenant-guard audit verify [--key-env VAR] [FILE]
      Follows every chain (one per worker VM) through the log; prints each chain's state and
      the first broken link of a broken chain with its line number (a line edited, deleted or
      out of order). Exit status 0: every chain intact; 1: a chain is broken.
      --key-env VAR: the chains are keyed (the filter's audit.key_env) with the key in
      environment variable VAR: each record's hash must be its HMAC under that key and each
      chain's start record must name it, so a file rewritten and re-chained without the key
      fails. A keyed chain verified without --key-env fails too, saying so.
  tenant-guard audit query [FILTERS] [FILE]
      Writes the matching records as JSON lines, exactly as logged (--ocsf: as OCSF API
      Activity events, class 6003; start records are left out).
      --tenant T   --user U   --reason R   --event deny|cross_tenant|shadow|start
      --decision allow|deny   --source IP   --chain ID   --cross-tenant
      --since TIME (inclusive)   --until TIME (exclusive)
      A filter given twice matches either value; different filters must all match. TIME is
      RFC 3339 (2026-11-29T23:30:04.123Z, 2026-11-29T23:30, 2026-11-29; UTC unless it says).
      Start records are shown only with --event start.
  tenant-guard audit summary [--json] [--top N] [FILE]
      Cross-tenant attempts per tenant, per source address and per reason, denials per reason,
      would-be denials (shadow mode) per reason, and both per hour (UTC).

FILE is an Envoy log (records are found after Envoy's prefix) or a JSON-lines file; without
FILE (or with -) the log is read from standard input. Files of any size are read in a stream.
";

/// Runs `tenant-guard audit ARGS`; `name` is how the messages name the command.
pub fn main(name: &str, args: &[String]) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{name}: {message}");
            ExitCode::from(2)
        }
    }
}

fn open(path: Option<&str>) -> Result<Box<dyn BufRead>, String> {
    Ok(match path {
        None | Some("-") => Box::new(BufReader::with_capacity(1 << 16, io::stdin())),
        Some(path) => Box::new(BufReader::with_capacity(
            1 << 16,
            File::open(path).map_err(|e| format!("{path}: {e}"))?,
        )),
    })
}

/// `--key-env VAR` taken out of `args`: the key in environment variable VAR.
fn key_option(args: &[String]) -> Result<(Option<verify::Key>, Vec<String>), String> {
    let mut key = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg != "--key-env" {
            rest.push(arg.clone());
            continue;
        }
        let name = it
            .next()
            .ok_or("--key-env needs the name of an environment variable")?;
        let value = std::env::var_os(name)
            .ok_or_else(|| format!("environment variable {name} is not set"))?;
        if value.is_empty() {
            return Err(format!("environment variable {name} is empty"));
        }
        key = Some(verify::Key::new(value.into_encoded_bytes()));
    }
    Ok((key, rest))
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    match command.as_str() {
        "verify" => {
            let (key, rest) = key_option(rest)?;
            let file = single_file(&rest)?;
            let report = verify::verify(open(file)?, key).map_err(|e| e.to_string())?;
            print!("{}", verify::render(&report));
            Ok(if report.intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        "query" => {
            let ocsf = rest.iter().any(|a| a == "--ocsf");
            let rest: Vec<String> = rest.iter().filter(|a| *a != "--ocsf").cloned().collect();
            let (filter, file) = parse_filter(&rest)?;
            let format = if ocsf { Format::Ocsf } else { Format::AsLogged };
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
            let counts = match query::query(open(file)?, &filter, format, &mut out) {
                Ok(counts) => counts,
                // A closed pipe (`| head`) is not an error.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
                Err(e) => return Err(e.to_string()),
            };
            match out.flush() {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.to_string()),
                _ => {}
            }
            eprintln!(
                "{} of {} records matched ({} lines{})",
                counts.matched,
                counts.records,
                counts.lines,
                if counts.unreadable > 0 {
                    format!(", {} unreadable records", counts.unreadable)
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        "summary" => {
            let mut json = false;
            let mut top = 20;
            let mut file = None;
            let mut it = rest.iter();
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--json" => json = true,
                    "--top" => {
                        top = it
                            .next()
                            .and_then(|n| n.parse().ok())
                            .ok_or("--top needs a number")?
                    }
                    flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                    path => {
                        if file.replace(path).is_some() {
                            return Err("one file at a time".into());
                        }
                    }
                }
            }
            let s = summary::summarise(open(file)?).map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", summary::render(&s, top));
            }
            Ok(ExitCode::SUCCESS)
        }
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other} (try --help)")),
    }
}

fn single_file(rest: &[String]) -> Result<Option<&str>, String> {
    match rest {
        [] => Ok(None),
        [flag] if flag.starts_with("--") => Err(format!("unknown option {flag}")),
        [file] => Ok(Some(file)),
        _ => Err("one file at a time".into()),
    }
}

fn parse_filter(rest: &[String]) -> Result<(Filter, Option<&str>), String> {
    let mut filter = Filter::default();
    let mut file = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--tenant" => filter.tenants.push(value("--tenant")?),
            "--user" => filter.users.push(value("--user")?),
            "--reason" => filter.reasons.push(value("--reason")?),
            "--event" => filter.events.push(value("--event")?),
            "--decision" => filter.decisions.push(value("--decision")?),
            "--source" => filter.sources.push(value("--source")?),
            "--chain" => filter.chains.push(value("--chain")?),
            "--cross-tenant" => filter.cross_tenant = true,
            "--since" | "--until" => {
                let text = value(arg)?;
                let ms = time::parse_ms(&text)
                    .ok_or_else(|| format!("{arg}: not an RFC 3339 time: {text}"))?;
                if arg == "--since" {
                    filter.since = Some(ms);
                } else {
                    filter.until = Some(ms);
                }
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => {
                if file.replace(path).is_some() {
                    return Err("one file at a time".into());
                }
            }
        }
    }
    Ok((filter, file))
}
