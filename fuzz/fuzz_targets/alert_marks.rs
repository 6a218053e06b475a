//! `alerts::Marks::decode` (a tenant's alert marks, read from shared data that any worker may
//! have written): never panics, what it reads encodes back to itself, and announcing over any
//! marks never announces a threshold that the usage did not reach, nor one twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::alerts::{self, Marks, Meter, Usage};

fuzz_target!(|data: &[u8]| {
    let marks = Marks::decode(data);
    assert_eq!(Marks::decode(&marks.encode()), marks);
    let used = data
        .iter()
        .fold(0u64, |n, b| n.wrapping_mul(31).wrapping_add(u64::from(*b)));
    let usages = [
        Usage {
            meter: Meter::Tokens(60),
            slot: used % 7,
            period_start: 0,
            limit: 1000,
            used: used % 1500,
        },
        Usage {
            meter: Meter::Budget,
            slot: used % 5,
            period_start: 0,
            limit: 1 + used % 100_000,
            used: used % 200_000,
        },
    ];
    let thresholds = [500, 800, 1000];
    let (next, crossings) = alerts::announce(&marks, &thresholds, &usages);
    for c in &crossings {
        assert!(u64::from(c.threshold) <= c.usage.permille());
    }
    let (again, none) = alerts::announce(&next, &thresholds, &usages);
    assert!(none.is_empty(), "announced twice: {none:?}");
    assert_eq!(again, next);
});
