//! RFC 3339 times as milliseconds since the Unix epoch, without a date library.

/// Milliseconds since 1970-01-01T00:00:00Z of an RFC 3339 time (`2026-11-29T23:30:04.123Z`,
/// any fraction, `Z` or `±hh:mm`). For command-line bounds the time of day may be cut short
/// (`2026-11-29`, `2026-11-29T23`, `2026-11-29T23:30`); the missing parts are zero, and without
/// an offset the time is UTC.
pub fn parse_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&month) {
        return None;
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let mut at = 10;
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    if matches!(b.get(at), Some(b'T' | b't' | b' ')) {
        hour = num(at + 1, 2)?;
        at += 3;
        if b.get(at) == Some(&b':') {
            minute = num(at + 1, 2)?;
            at += 3;
            if b.get(at) == Some(&b':') {
                second = num(at + 1, 2)?;
                at += 3;
                if b.get(at) == Some(&b'.') {
                    at += 1;
                    let digits = b
                        .get(at..)?
                        .iter()
                        .take_while(|c| c.is_ascii_digit())
                        .count();
                    if digits == 0 {
                        return None;
                    }
                    let mut scale = 100;
                    for d in b.get(at..at + digits.min(3))? {
                        millis += i64::from(d - b'0') * scale;
                        scale /= 10;
                    }
                    at += digits;
                }
            }
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset_minutes = match b.get(at) {
        None => 0,
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if at + 6 == b.len() && b.get(at + 3) == Some(&b':') => {
            let minutes = num(at + 1, 2)? * 60 + num(at + 4, 2)?;
            if sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// `YYYY-MM-DDTHH` of a time in milliseconds (the hour a summary counts it in), UTC.
pub fn hour_of(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let hour = ms.rem_euclid(86_400_000) / 3_600_000;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{hour:02}")
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms() {
        assert_eq!(parse_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_ms("2026-11-29T23:30:04.123Z"),
            Some(1_795_995_004_123)
        );
        assert_eq!(
            parse_ms("2026-11-29T23:30:04.1234567Z"),
            Some(1_795_995_004_123)
        );
        assert_eq!(parse_ms("2026-11-29T23:30:04Z"), Some(1_795_995_004_000));
        assert_eq!(parse_ms("2026-11-29"), Some(1_795_910_400_000));
        assert_eq!(parse_ms("2026-11-29T23"), Some(1_795_993_200_000));
        assert_eq!(parse_ms("2026-11-29T23:30"), Some(1_795_995_000_000));
        assert_eq!(
            parse_ms("2026-11-30T01:30:04.123+02:00"),
            parse_ms("2026-11-29T23:30:04.123Z")
        );
        assert_eq!(parse_ms("2024-02-29"), Some(1_709_164_800_000));
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-30",
            "2023-02-29",
            "2026-11-29T24",
            "2026-11-29T23:30:04.Z",
            "2026-11-29T23:30:04Zjunk",
            "2026-11-29x",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn hours_round_trip() {
        let ms = parse_ms("2026-11-29T23:30:04.123Z").unwrap();
        assert_eq!(hour_of(ms), "2026-11-29T23");
        assert_eq!(
            hour_of(parse_ms("2024-02-29T05:00:00Z").unwrap()),
            "2024-02-29T05"
        );
        assert_eq!(hour_of(-1), "1969-12-31T23");
    }
}
