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

/// Room for the checksum text: 40 numbers of at most 20 digits, a sign
/// and 32 zeros (see [`wire_digits`]).
const TEXT_MAX: usize = 2 * 2 * CHECKSUM_LEVELS * 53;

/// Kraken's CRC-32 of `book`.
pub fn kraken_crc32(book: &Book, fmt: WireFormat) -> u32 {
    // NB: the text is assembled first and hashed in one call: crc32fast
    // folds long inputs with PCLMULQDQ, while 40 short updates each took
    // its byte-wise path (16% of `bench parse --only kraken` before).
    let mut text = [0u8; TEXT_MAX];
    let mut n = 0;
    let mut buf = [0u8; 64];
    let mut put = |d: &[u8]| {
        text[n..n + d.len()].copy_from_slice(d);
        n += d.len();
    };
    for (p, q) in book.asks.iter().take(CHECKSUM_LEVELS) {
        put(wire_digits(
            p,
            fmt.price_scale,
            fmt.price_decimals,
            &mut buf,
        ));
        put(wire_digits(q, fmt.qty_scale, fmt.qty_decimals, &mut buf));
    }
    for (p, q) in book.bids.iter().take(CHECKSUM_LEVELS) {
        put(wire_digits(
            p,
            fmt.price_scale,
            fmt.price_decimals,
            &mut buf,
        ));
        put(wire_digits(q, fmt.qty_scale, fmt.qty_decimals, &mut buf));
    }
    crc32fast::hash(&text[..n])
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

/// Writes the decimal digits of `v` so that they end at `buf[end]`;
/// returns where they start.
#[inline]
fn put_u64(mut v: u64, buf: &mut [u8; 64], end: usize) -> usize {
    let mut i = end;
    while v >= 100 {
        let r = (v % 100) as usize;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[2 * r..2 * r + 2]);
    }
    if v >= 10 {
        i -= 2;
        let r = v as usize;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[2 * r..2 * r + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    i
}

/// The digits of `value` (at `scale`) as written with `decimals` decimals,
/// point removed, leading zeros stripped (`0` stays `0`).
#[inline]
pub fn wire_digits(value: i64, scale: u8, decimals: u8, buf: &mut [u8; 64]) -> &[u8] {
    let neg = value < 0;
    let abs = value.unsigned_abs();
    let mut i = if decimals <= scale {
        // The usual case: drop the scale's extra zeros.
        put_u64(abs / 10u64.pow((scale - decimals) as u32), buf, buf.len())
    } else {
        // More wire decimals than the scale (all trailing zeros): the digits
        // then that many zeros, capped so the buffer holds them (such a
        // number can only come from hostile input and fails the check).
        let zeros = ((decimals - scale) as usize).min(32);
        let end = buf.len() - zeros;
        buf[end..].fill(b'0');
        put_u64(abs, buf, end)
    };
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
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
