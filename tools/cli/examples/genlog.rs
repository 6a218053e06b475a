//! Writes a generated audit log (for measurements): `genlog RECORDS [CHAINS] > file`.

use std::io::{self, BufWriter};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let records = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let chains = args.next().and_then(|n| n.parse().ok()).unwrap_or(4);
    let out = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, out.lock());
    // 2026-11-29T00:00:00Z, one record every 50 ms.
    tenant_guard_cli::audit::generate::log(&mut out, records, chains, 1_795_910_400_000, 50)
}
