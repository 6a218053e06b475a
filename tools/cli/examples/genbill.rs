//! Writes a generated Envoy log of request records (for measurements):
//! `genbill RECORDS > file`: from 2026-12-01T00:00:00Z, spread over the month.

use std::io::{self, BufWriter};

fn main() -> io::Result<()> {
    let records: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let out = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, out.lock());
    // 2026-12-01T00:00:00Z; the month's 2,678,400 seconds spread over the records.
    let step_ms = (2_678_400_000 / records.max(1) as i64).max(1);
    tenant_guard_cli::bill::generate::log(&mut out, records, 1_796_083_200_000, step_ms)
}
