//! The few RFC 3339 timestamps the exchanges send (`2026-08-16T23:37:04.316445Z`),
//! parsed to and formatted from nanoseconds since the Unix epoch, UTC only.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, &c| acc * 10 + (c - b'0') as u32))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` (a space is accepted in
/// place of `T`) into nanoseconds since the epoch. Fractions past nanoseconds
/// are truncated. `None` when the text is not of that shape.
pub fn parse_ns(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[10] != b'T' && b[10] != b' ' {
        return None;
    }
    let year = digits(&b[0..4])? as i64;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let (h, mi, s) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos: i64 = 0;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, &c) in rest[1..1 + n].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + (c - b'0') as i64;
            }
        }
        for _ in n..9 {
            nanos *= 10;
        }
        rest = &rest[1 + n..];
    }
    if rest != b"Z" && rest != b"+00:00" {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + (h * 3600 + mi * 60 + s) as i64) * 1_000_000_000) + nanos)
}

/// Formats nanoseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`
/// (microseconds, as Kraken and Coinbase send them).
pub fn format_micros(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kraken_and_coinbase_timestamps() {
        // 2026-08-16T23:37:04Z = 1786923424 s (date -u -d @1786923424).
        assert_eq!(
            parse_ns("2026-08-16T23:37:04.316445Z"),
            Some(1_786_923_424_316_445_000)
        );
        assert_eq!(
            parse_ns("2026-09-30T02:39:53.690696234Z"),
            Some(1_790_735_993_690_696_234)
        );
        assert_eq!(parse_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_ns("2021-04-17T16:43:30.244075Z").map(|n| n % 1_000_000_000),
            Some(244_075_000)
        );
        assert_eq!(
            parse_ns("2021-04-17 16:43:30Z"),
            Some(1_618_677_810_000_000_000)
        );
    }

    #[test]
    fn refuses_what_is_not_a_timestamp() {
        for bad in [
            "",
            "2021-04-17",
            "2021-13-01T00:00:00Z",
            "2021-04-17T16:43:30.Z",
            "2021-04-17T16:43:30+02:00",
            "abcd-04-17T16:43:30Z",
        ] {
            assert_eq!(parse_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn format_round_trips_at_micros() {
        for ns in [0i64, 1_786_923_424_316_445_000, 951_782_400_000_001_000] {
            assert_eq!(parse_ns(&format_micros(ns)), Some(ns));
        }
        assert_eq!(
            format_micros(951_782_400_000_001_000),
            "2000-02-29T00:00:00.000001Z"
        );
    }
}
