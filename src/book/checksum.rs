//! Kraken v2 book checksum: CRC-32 (zlib polynomial) over the top 10 asks
//! (ascending) then the top 10 bids (descending), each level as its price
//! text then its quantity text with the `.` removed and leading zeros
//! stripped, as the exchange wrote them.
//!
//! The book stores integers at the instrument's scale `s`; Kraken writes a
//! pair's prices (and its quantities) always with the same number of
//! decimals `d`, so the text digits are `value / 10^(s-d)` printed as an
//! integer (or `value * 10^(d-s)` when the text had more decimals than the
//! scale, all of them trailing zeros).

use super::Book;

/// Levels per side that the checksum covers.
pub const CHECKSUM_LEVELS: usize = 10;

/// How to turn stored integers back into the wire digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireFormat {
    pub price_scale: u8,
    pub qty_scale: u8,
    pub price_decimals: u8,
    pub qty_decimals: u8,
}

/// Kraken's CRC-32 of `book`.
pub fn kraken_crc32(book: &Book, fmt: WireFormat) -> u32 {
    // NB: the digits are written straight into one buffer and hashed in
    // one call (a few for pathological numbers): crc32fast folds long
    // inputs with PCLMULQDQ, while 40 short updates each took its byte-wise
    // path, and copying each number's digits cost a memmove call; together
    // that was a quarter of `tickring bench parse --only kraken_book_crc`.
    let mut h = crc32fast::Hasher::new();
    let mut text = [0u8; 512];
    let mut n = 0;
    let mut put = |v: i64, scale: u8, decimals: u8| {
        if n + MAX_WIRE_LEN > text.len() {
            h.update(&text[..n]);
            n = 0;
        }
        n += write_wire(&mut text[n..], v, scale, decimals);
    };
    for (p, q) in book.asks.iter().take(CHECKSUM_LEVELS) {
        put(p, fmt.price_scale, fmt.price_decimals);
        put(q, fmt.qty_scale, fmt.qty_decimals);
    }
    for (p, q) in book.bids.iter().take(CHECKSUM_LEVELS) {
        put(p, fmt.price_scale, fmt.price_decimals);
        put(q, fmt.qty_scale, fmt.qty_decimals);
    }
    h.update(&text[..n]);
    h.finalize()
}

/// `"00" "01" ... "99"`: two digits per division.
static DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Longest text [`write_wire`] writes: a sign, 20 digits, 32 zeros.
pub const MAX_WIRE_LEN: usize = 53;

/// Writes the decimal digits of `v` into `out[..len]` where `len` is their
/// count; returns `len`.
#[inline]
fn put_u64(mut v: u64, out: &mut [u8]) -> usize {
    let len = v.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut i = len;
    while v >= 100 {
        let r = (v % 100) as usize;
        v /= 100;
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[2 * r..2 * r + 2]);
    }
    if v >= 10 {
        let r = v as usize;
        out[0..2].copy_from_slice(&DIGIT_PAIRS[2 * r..2 * r + 2]);
    } else {
        out[0] = b'0' + v as u8;
    }
    len
}

/// Writes the wire digits of `value` (see [`wire_digits`]) at the start of
/// `out` (at least [`MAX_WIRE_LEN`] long); returns how many.
#[inline]
pub fn write_wire(out: &mut [u8], value: i64, scale: u8, decimals: u8) -> usize {
    let mut n = 0;
    if value < 0 {
        out[0] = b'-';
        n = 1;
    }
    let abs = value.unsigned_abs();
    if decimals <= scale {
        // The usual case: drop the scale's extra zeros.
        n + put_u64(abs / 10u64.pow((scale - decimals) as u32), &mut out[n..])
    } else {
        // More wire decimals than the scale (all trailing zeros): the digits
        // then that many zeros, capped (such a number can only come from
        // hostile input, and fails the check).
        n += put_u64(abs, &mut out[n..]);
        let zeros = ((decimals - scale) as usize).min(32);
        out[n..n + zeros].fill(b'0');
        n + zeros
    }
}

/// The digits of `value` (at `scale`) as written with `decimals` decimals,
/// point removed, leading zeros stripped (`0` stays `0`).
pub fn wire_digits(value: i64, scale: u8, decimals: u8, buf: &mut [u8; 64]) -> &[u8] {
    let n = write_wire(buf, value, scale, decimals);
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_digits_match_kraken_text() {
        let mut b = [0u8; 64];
        // 62802.5 at scale 8, sent with 1 decimal -> "628025".
        assert_eq!(wire_digits(6_280_250_000_000, 8, 1, &mut b), b"628025");
        // 0.00005100 at scale 8, sent with 8 decimals -> "5100".
        assert_eq!(wire_digits(5_100, 8, 8, &mut b), b"5100");
        // 62797.0 -> "627970".
        assert_eq!(wire_digits(6_279_700_000_000, 8, 1, &mut b), b"627970");
        // More wire decimals than the scale (trailing zeros): 1.50 at scale 1.
        assert_eq!(wire_digits(15, 1, 2, &mut b), b"150");
        assert_eq!(wire_digits(0, 8, 8, &mut b), b"0");
        assert_eq!(wire_digits(-1234567, 2, 2, &mut b), b"-1234567");
        assert_eq!(wire_digits(i64::MIN, 0, 0, &mut b), b"-9223372036854775808");
        assert_eq!(wire_digits(7, 0, 40, &mut b).len(), 33, "zeros are capped");
        for v in [
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            12345,
            100000,
            u32::MAX as i64,
        ] {
            assert_eq!(wire_digits(v, 0, 0, &mut b), v.to_string().as_bytes());
        }
    }

    #[test]
    fn checksum_of_kraken_docs_style_book() {
        // The first snapshot of the fixture session, checksum 975661613.
        let bids = [
            ("62802.5", "0.02987767"),
            ("62800.7", "0.05598472"),
            ("62800.6", "0.00005100"),
            ("62797.5", "0.00005100"),
            ("62797.0", "0.00012700"),
            ("62796.2", "0.00019900"),
            ("62794.3", "0.00005100"),
            ("62794.0", "0.00532806"),
            ("62793.9", "0.79625467"),
            ("62793.1", "0.00318620"),
        ];
        let asks = [
            ("62802.6", "1.09074394"),
            ("62803.7", "0.05598472"),
            ("62803.8", "0.95536416"),
            ("62803.9", "1.16228981"),
            ("62806.5", "0.18489680"),
            ("62806.6", "3.79004471"),
            ("62806.8", "0.00005100"),
            ("62807.1", "0.36000000"),
            ("62807.2", "0.65540712"),
            ("62807.4", "0.50920200"),
        ];
        let mut book = Book::new();
        for (p, q) in bids {
            book.bids.set(
                crate::fixed::parse(p.as_bytes(), 8).unwrap(),
                crate::fixed::parse(q.as_bytes(), 8).unwrap(),
            );
        }
        for (p, q) in asks {
            book.asks.set(
                crate::fixed::parse(p.as_bytes(), 8).unwrap(),
                crate::fixed::parse(q.as_bytes(), 8).unwrap(),
            );
        }
        let fmt = WireFormat {
            price_scale: 8,
            qty_scale: 8,
            price_decimals: 1,
            qty_decimals: 8,
        };
        assert_eq!(kraken_crc32(&book, fmt), 975_661_613);
    }
}
