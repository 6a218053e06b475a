//! `tenant-guard`: one command for operators and auditors.

use std::process::ExitCode;

use tenant_guard_cli::{api_key, audit, bill, check};

const USAGE: &str = "\
tenant-guard: the operators' and auditors' command for the tenant-guard Envoy filter

USAGE:
  tenant-guard check [--print-policy] FILE...   compile policies with the filter's own code
  tenant-guard audit verify|query|summary ...   verify, query and summarise audit logs
  tenant-guard bill --month YYYY-MM ...         the month's bill per tenant, user, model
  tenant-guard api-key --tenant T ...           a new tenant API key, and its policy entry
  tenant-guard help [COMMAND]                   this text, or a command's

";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let wants_help = rest.iter().any(|a| a == "--help" || a == "-h");
    match command.as_str() {
        "check" if wants_help => help(check::USAGE),
        "check" => check::main(rest),
        "audit" => audit::command::main("tenant-guard audit", rest),
        "bill" => bill::command::main(rest),
        "api-key" if wants_help => help(api_key::USAGE),
        "api-key" => api_key::main(rest),
        "help" | "--help" | "-h" => match rest.first().map(String::as_str) {
            Some("check") => help(check::USAGE),
            Some("audit") => help(audit::command::USAGE),
            Some("bill") => help(bill::command::USAGE),
            Some("api-key") => help(api_key::USAGE),
            _ => help(&format!(
                "{USAGE}{}\n{}\n{}\n{}",
                check::USAGE,
                audit::command::USAGE,
                bill::command::USAGE,
                api_key::USAGE
            )),
        },
        other => {
            eprintln!("tenant-guard: unknown command {other} (try tenant-guard help)");
            ExitCode::from(2)
        }
    }
}

fn help(text: &str) -> ExitCode {
    print!("{text}");
    ExitCode::SUCCESS
}
