//! RFC 3339 date-times (`2026-12-31T23:59:59Z`, `2026-12-31T23:59:59.5+01:00`) to Unix seconds,
//! for dates written in the policy (`tenants.<id>.api_keys[].expires`).

/// Unix seconds of an RFC 3339 `date-time` (fractions of a second dropped); `None` when the text
/// is not one, names a day that does not exist, or lies before 1970.
pub fn parse(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let number = |from: usize, len: usize| -> Option<u64> {
        let digits = b.get(from..from.checked_add(len)?)?;
        digits.iter().try_fold(0u64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-')
        && at(7, b'-')
        && (at(10, b'T') || at(10, b't'))
        && at(13, b':')
        && at(16, b':'))
    {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
    let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60: a leap second.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    if at(i, b'.') {
        let digits = b
            .get(i + 1..)?
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        i += 1 + digits;
    }
    let offset: i64 = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (number(i + 1, 2)?, number(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = i64::try_from(h * 60 + m).ok()?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let days = i64::try_from(days_from_civil(year, month, day)?).ok()?;
    let local = days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).ok()?;
    u64::try_from(local - offset).ok()
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of 1970 or later (Howard Hinnant's days_from_civil).
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::audit::rfc3339_millis;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn utc_dates_read_as_unix_seconds() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse("2025-11-29T23:30:04.123Z"), Some(1_764_459_004));
        assert_eq!(parse("2025-11-29t23:30:04z"), Some(1_764_459_004));
        assert_eq!(parse("9999-12-31T23:59:59Z"), Some(253_402_300_799));
    }

    #[test]
    fn offsets_are_taken_off() {
        assert_eq!(
            parse("2026-01-01T01:00:00+01:00"),
            parse("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            parse("2025-12-31T19:30:00-04:30"),
            parse("2026-01-01T00:00:00Z")
        );
        assert_eq!(parse("1970-01-01T00:00:00-00:01"), Some(60));
        assert_eq!(parse("1970-01-01T00:00:00+00:01"), None);
    }

    #[test]
    fn what_the_filter_writes_reads_back() {
        for ms in [0, 951_782_400_001, 1_764_459_004_123, 4_102_444_799_999] {
            assert_eq!(parse(&rfc3339_millis(ms)), Some(ms / 1000));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:61Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00Zx",
            "+2026-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse("2026-06-30T23:59:60Z"), parse("2026-07-01T00:00:00Z"));
    }
}
