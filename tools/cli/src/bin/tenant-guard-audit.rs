//! `tenant-guard-audit`: the former name of `tenant-guard audit`, kept for one release.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    tenant_guard_cli::audit::command::main("tenant-guard-audit", &args)
}
