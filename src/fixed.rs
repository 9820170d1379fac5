//! Exact decimal fixed-point numbers: text from the wire to `i64` at a given
//! scale (number of decimal places) and back, with no binary float anywhere.

use std::fmt;

/// Largest supported scale (decimal places). 10^18 still fits in an `i64`.
pub const MAX_SCALE: u8 = 18;

/// Why a decimal text could not become a fixed-point integer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FixedError {
    /// Empty text, or text that is not `[-]digits[.digits]`.
    Syntax,
    /// More significant decimal places than the scale holds (the value would
    /// have to be rounded): `needed` places, `scale` available.
    TooPrecise { needed: usize, scale: u8 },
    /// The value does not fit in an `i64` at this scale.
    Overflow,
    /// The scale itself is larger than [`MAX_SCALE`].
    BadScale(u8),
}

impl fmt::Display for FixedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixedError::Syntax => f.write_str("not a decimal number"),
            FixedError::TooPrecise { needed, scale } => write!(
                f,
                "has {needed} significant decimal places but the scale holds {scale}"
            ),
            FixedError::Overflow => f.write_str("does not fit in 64 bits at this scale"),
            FixedError::BadScale(s) => write!(f, "scale {s} is larger than {MAX_SCALE}"),
        }
    }
}

impl std::error::Error for FixedError {}

const POW10: [i64; 19] = {
    let mut t = [1i64; 19];
    let mut i = 1;
    while i < 19 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// 10^`scale`.
///
/// # Panics
/// When `scale > MAX_SCALE`.
pub fn pow10(scale: u8) -> i64 {
    POW10[scale as usize]
}

/// Parses a decimal text (`-12.3400`, `0.00005100`, `62802`) into an
/// integer at `scale` decimal places. Trailing zeros past the scale are
/// accepted (they change nothing); other digits past the scale are refused,
/// never rounded. Exponents (`1e-5`) are refused.
#[inline]
pub fn parse(text: &[u8], scale: u8) -> Result<i64, FixedError> {
    match parse_short(text, scale) {
        Some(v) => Ok(v),
        None => parse_general(text, scale),
    }
}

/// Fast path of [`parse`] for the common case: `[-]digits[.digits]` with at
/// most 18 digits, no trailing zero past the scale, value in range. `None`
/// means "not that case": [`parse_general`] then gives the answer or the
/// error. 18 decimal digits fit a `u64` without overflow checks.
///
// NB: one pass, no checked arithmetic per digit: `tickring bench parse`
// (two to forty of these per message) gained 5-10% with it.
#[inline]
fn parse_short(text: &[u8], scale: u8) -> Option<i64> {
    if scale > MAX_SCALE || text.len() > 20 {
        return None;
    }
    let digits = match text.first() {
        Some(b'-') => &text[1..],
        _ => text,
    };
    let neg = digits.len() != text.len();
    let (int, frac) = match digits.iter().position(|&b| b == b'.') {
        Some(p) => (&digits[..p], &digits[p + 1..]),
        None => (digits, &digits[digits.len()..]),
    };
    let n_digits = int.len() + frac.len();
    if n_digits == 0 || n_digits > 18 || frac.len() > scale as usize {
        return None;
    }
    let mut acc: u64 = 0;
    for &b in int {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc = acc * 10 + d as u64;
    }
    let mut rest = frac;
    while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
        acc = acc * 100_000_000 + eight_digits(chunk)?;
        rest = tail;
    }
    for &b in rest {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc = acc * 10 + d as u64;
    }
    let v = acc.checked_mul(POW10[scale as usize - frac.len()] as u64)?;
    let v = i64::try_from(v).ok()?;
    Some(if neg { -v } else { v })
}

/// The value of eight ASCII digits, or `None` if any byte is not a digit
/// (SWAR, as in simdjson's `parse_eight_digits_unrolled`).
#[inline]
fn eight_digits(chunk: &[u8; 8]) -> Option<u64> {
    let v = u64::from_le_bytes(*chunk);
    // Every byte in 0x30..=0x39: high nibble 3, and low nibble + 6 < 16.
    let hi = 0xF0F0_F0F0_F0F0_F0F0u64;
    if v & hi != 0x3030_3030_3030_3030
        || (v.wrapping_add(0x0606_0606_0606_0606) & hi) != 0x3030_3030_3030_3030
    {
        return None;
    }
    let v = (v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    Some((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32)
}

fn parse_general(text: &[u8], scale: u8) -> Result<i64, FixedError> {
    if scale > MAX_SCALE {
        return Err(FixedError::BadScale(scale));
    }
    let (neg, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(FixedError::Syntax);
    }
    let (int_part, frac_part) = match digits.iter().position(|&b| b == b'.') {
        Some(p) => (&digits[..p], &digits[p + 1..]),
        None => (digits, &digits[digits.len()..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(FixedError::Syntax);
    }
    // Accumulate as a negative number so that i64::MIN is reachable.
    let mut acc: i64 = 0;
    for &b in int_part {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(FixedError::Syntax);
        }
        acc = acc
            .checked_mul(10)
            .and_then(|v| v.checked_sub(d as i64))
            .ok_or(FixedError::Overflow)?;
    }
    let mut frac_digits = frac_part.len();
    for &b in frac_part {
        if b.wrapping_sub(b'0') > 9 {
            return Err(FixedError::Syntax);
        }
    }
    // Drop trailing zeros beyond the scale; anything else beyond it is an error.
    while frac_digits > scale as usize && frac_part[frac_digits - 1] == b'0' {
        frac_digits -= 1;
    }
    if frac_digits > scale as usize {
        return Err(FixedError::TooPrecise {
            needed: frac_digits,
            scale,
        });
    }
    for &b in &frac_part[..frac_digits] {
        acc = acc
            .checked_mul(10)
            .and_then(|v| v.checked_sub((b - b'0') as i64))
            .ok_or(FixedError::Overflow)?;
    }
    acc = acc
        .checked_mul(POW10[scale as usize - frac_digits])
        .ok_or(FixedError::Overflow)?;
    if neg {
        Ok(acc)
    } else {
        acc.checked_neg().ok_or(FixedError::Overflow)
    }
}

/// The number of significant decimal places in a decimal text (trailing
/// zeros after the point do not count): `"0.00005100"` -> 6, `"62802.5"` -> 1.
pub fn decimals(text: &[u8]) -> usize {
    match text.iter().position(|&b| b == b'.') {
        None => 0,
        Some(p) => {
            let frac = &text[p + 1..];
            frac.len() - frac.iter().rev().take_while(|&&b| b == b'0').count()
        }
    }
}

/// Canonical decimal text of `value` at `scale`: no exponent, no trailing
/// zeros after the point, no trailing point (`6280250000000` at 8 ->
/// `"62802.5"`, `5100` at 8 -> `"0.000051"`).
pub fn format(value: i64, scale: u8) -> String {
    let mut s = String::with_capacity(24);
    write_canonical(&mut s, value, scale);
    s
}

/// Appends the canonical decimal text of `value` at `scale` to `out`.
pub fn write_canonical(out: &mut String, value: i64, scale: u8) {
    use std::fmt::Write;
    let neg = value < 0;
    let abs = value.unsigned_abs();
    let p = POW10[scale as usize] as u64;
    let int = abs / p;
    let mut frac = abs % p;
    if neg {
        out.push('-');
    }
    let _ = write!(out, "{int}");
    if frac != 0 {
        let mut width = scale as usize;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        let _ = write!(out, ".{frac:0width$}");
    }
}

/// A fixed-point value with its scale, formatted canonically by `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub value: i64,
    pub scale: u8,
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        write_canonical(&mut s, self.value, self.scale);
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wire_spellings_exactly() {
        assert_eq!(parse(b"62802.5", 8), Ok(6_280_250_000_000));
        assert_eq!(parse(b"0.00005100", 8), Ok(5_100));
        assert_eq!(parse(b"76745.19000000", 2), Ok(7_674_519));
        assert_eq!(parse(b"-1.5", 1), Ok(-15));
        assert_eq!(parse(b"12", 0), Ok(12));
        assert_eq!(parse(b".5", 1), Ok(5));
        assert_eq!(parse(b"5.", 1), Ok(50));
    }

    #[test]
    fn refuses_rounding_overflow_and_garbage() {
        assert_eq!(
            parse(b"0.123", 2),
            Err(FixedError::TooPrecise {
                needed: 3,
                scale: 2
            })
        );
        assert_eq!(parse(b"99999999999", 9), Err(FixedError::Overflow));
        assert_eq!(parse(b"1e-5", 8), Err(FixedError::Syntax));
        assert_eq!(parse(b"", 8), Err(FixedError::Syntax));
        assert_eq!(parse(b"-", 8), Err(FixedError::Syntax));
        assert_eq!(parse(b".", 8), Err(FixedError::Syntax));
        assert_eq!(parse(b"1.2.3", 8), Err(FixedError::Syntax));
        assert_eq!(parse(b"1", 19), Err(FixedError::BadScale(19)));
    }

    #[test]
    fn extremes_of_i64_are_reachable() {
        assert_eq!(parse(b"-9223372036854775808", 0), Ok(i64::MIN));
        assert_eq!(parse(b"9223372036854775807", 0), Ok(i64::MAX));
        assert_eq!(parse(b"9223372036854775808", 0), Err(FixedError::Overflow));
        assert_eq!(format(i64::MIN, 0), "-9223372036854775808");
        assert_eq!(format(i64::MIN, 18), "-9.223372036854775808");
    }

    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        let texts = [
            "0",
            "-0",
            "1",
            "12.5",
            "-12.50",
            "0.00005100",
            "76745.19000000",
            "999999999999999999",
            "9999999999.99999999",
            "92233720368.54775807",
            "-92233720368.54775808",
            ".5",
            "5.",
            "1.",
            ".",
            "-",
            "",
            "1.2.3",
            "+1",
            "1e5",
            "0.123456789",
            "00012",
            "12345678901234567890",
        ];
        for t in texts {
            for scale in [0u8, 2, 8, 18] {
                let general = parse_general(t.as_bytes(), scale);
                if let Some(v) = parse_short(t.as_bytes(), scale) {
                    assert_eq!(Ok(v), general, "{t:?} at {scale}");
                }
                assert_eq!(parse(t.as_bytes(), scale), general, "{t:?} at {scale}");
            }
        }
    }

    #[test]
    fn eight_digits_reads_digits_and_refuses_the_rest() {
        assert_eq!(eight_digits(b"35210000"), Some(35_210_000));
        assert_eq!(eight_digits(b"00000001"), Some(1));
        assert_eq!(eight_digits(b"99999999"), Some(99_999_999));
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut c = *b"12345678";
                c[pos] = b;
                let want = b.is_ascii_digit();
                assert_eq!(eight_digits(&c).is_some(), want, "byte {b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format(6_280_250_000_000, 8), "62802.5");
        assert_eq!(format(5_100, 8), "0.000051");
        assert_eq!(format(100_000_000, 8), "1");
        assert_eq!(format(0, 8), "0");
        assert_eq!(format(-15, 1), "-1.5");
        assert_eq!(format(-5, 2), "-0.05");
    }

    #[test]
    fn format_inverts_parse() {
        for text in ["0.1", "123.456", "-0.00000001", "42", "9.99"] {
            let v = parse(text.as_bytes(), 8).unwrap();
            assert_eq!(format(v, 8), text);
        }
    }

    #[test]
    fn counts_significant_decimals() {
        assert_eq!(decimals(b"0.00005100"), 6);
        assert_eq!(decimals(b"62802.5"), 1);
        assert_eq!(decimals(b"62802"), 0);
        assert_eq!(decimals(b"1.000"), 0);
    }
}
