//! A small validating JSON pull scanner specialised for exchange messages.
//!
//! It walks one JSON text in place (no allocation, no tree) and hands the
//! adapters raw slices of the input: keys, string contents and number
//! *texts*. Numbers are never converted to binary floats; the adapters turn
//! the text into fixed-point integers with [`crate::fixed::parse`] or into
//! integers with [`parse_u64`]. Everything the scanner passes over is
//! validated as JSON (RFC 8259): strings (escapes, control characters,
//! UTF-8), number grammar, structure, nesting depth, and nothing but
//! whitespace after the top-level value.
//!
//! Checked against `serde_json` on every fixture line in the tests and by
//! the fuzz target `json` (`fuzz/fuzz_targets/json.rs`).

use std::borrow::Cow;
use std::fmt;

/// Deepest nesting the scanner accepts (objects and arrays). Exchange
/// messages nest 4 levels at most; the limit keeps `skip_value` recursion
/// bounded on hostile input.
pub const MAX_DEPTH: u32 = 64;

/// What was wrong with a JSON text, and at which byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub kind: JsonErrorKind,
    /// Byte offset in the frame where the problem was found.
    pub offset: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// The text ended in the middle of a value.
    Eof,
    /// A byte that cannot start or continue what was expected here.
    Unexpected { expected: &'static str, found: u8 },
    /// A raw control character (< 0x20) inside a string.
    ControlInString,
    /// A bad `\` escape (unknown letter, bad hex, lone surrogate).
    BadEscape,
    /// String bytes that are not UTF-8.
    BadUtf8,
    /// A number that does not follow the JSON number grammar.
    BadNumber,
    /// Objects/arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Something other than whitespace after the top-level value.
    TrailingCharacters,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            JsonErrorKind::Eof => write!(f, "unexpected end of JSON at byte {}", self.offset),
            JsonErrorKind::Unexpected { expected, found } => write!(
                f,
                "expected {expected} at byte {}, found {:?}",
                self.offset, found as char
            ),
            JsonErrorKind::ControlInString => {
                write!(f, "control character in string at byte {}", self.offset)
            }
            JsonErrorKind::BadEscape => write!(f, "bad string escape at byte {}", self.offset),
            JsonErrorKind::BadUtf8 => write!(f, "string is not UTF-8 at byte {}", self.offset),
            JsonErrorKind::BadNumber => write!(f, "malformed number at byte {}", self.offset),
            JsonErrorKind::TooDeep => {
                write!(f, "nesting deeper than {MAX_DEPTH} at byte {}", self.offset)
            }
            JsonErrorKind::TrailingCharacters => {
                write!(f, "trailing characters at byte {}", self.offset)
            }
        }
    }
}

impl std::error::Error for JsonError {}

/// A JSON string as it appears between its quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Str<'a> {
    /// The bytes between the quotes, escapes not decoded.
    pub raw: &'a [u8],
    /// Whether `raw` contains a `\` escape.
    pub escaped: bool,
}

impl<'a> Str<'a> {
    /// The decoded string bytes (UTF-8); borrows unless escapes must be decoded.
    #[inline(always)]
    pub fn decoded(&self) -> Cow<'a, [u8]> {
        if !self.escaped {
            return Cow::Borrowed(self.raw);
        }
        Cow::Owned(unescape(self.raw))
    }

    /// Whether the decoded string equals `s`. No allocation when unescaped.
    #[inline]
    pub fn is(&self, s: &[u8]) -> bool {
        if !self.escaped {
            self.raw == s
        } else {
            *self.decoded() == *s
        }
    }
}

/// Byte classes for the string fast path: 0 = plain, 1 = needs a look
/// (`"`, `\`, control characters, non-ASCII).
static STR_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        if i < 0x20 || i == b'"' as usize || i == b'\\' as usize || i >= 0x80 {
            t[i] = 1;
        }
        i += 1;
    }
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte at or after `i` that is not plain string
/// content (`"`, `\\`, a control character or non-ASCII), or `buf.len()`.
///
// NB: eight bytes per step (SWAR): `bench parse --only binance_trade` went
// from 3.0 M to 3.4 M msg/s with it (CPU time, this machine).
#[inline(always)]
fn plain_prefix_end(buf: &[u8], mut i: usize) -> usize {
    while i + 8 <= buf.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[i..i + 8]);
        let x = u64::from_le_bytes(w);
        // A byte is flagged when it is >= 0x80, < 0x20, '"' or '\\'. Only
        // the lowest flagged byte is exact (borrows may flag later ones).
        let quote = x ^ (LO * b'"' as u64);
        let bslash = x ^ (LO * b'\\' as u64);
        let m = (x & HI)
            | (x.wrapping_sub(LO * 0x20) & !x & HI)
            | (quote.wrapping_sub(LO) & !quote & HI)
            | (bslash.wrapping_sub(LO) & !bslash & HI);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < buf.len() && STR_CLASS[buf[i] as usize] == 0 {
        i += 1;
    }
    i
}

/// The scanner: a cursor over one JSON text.
pub struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: u32,
}

/// Iterates the members of an object opened with [`Scanner::object`].
pub struct ObjIter {
    first: bool,
}

/// Iterates the elements of an array opened with [`Scanner::array`].
pub struct ArrIter {
    first: bool,
}

impl<'a> Scanner<'a> {
    pub fn new(buf: &'a [u8]) -> Scanner<'a> {
        Scanner {
            buf,
            pos: 0,
            depth: 0,
        }
    }

    /// Current byte offset.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError {
            kind,
            offset: self.pos,
        }
    }

    #[inline]
    fn unexpected(&self, expected: &'static str) -> JsonError {
        match self.buf.get(self.pos) {
            Some(&found) => self.err(JsonErrorKind::Unexpected { expected, found }),
            None => self.err(JsonErrorKind::Eof),
        }
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(&b) = self.buf.get(self.pos) {
            if b == b' ' || b == b'\n' || b == b'\r' || b == b'\t' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next non-whitespace byte, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.buf.get(self.pos).copied()
    }

    /// Checks that only whitespace remains.
    pub fn finish(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.pos != self.buf.len() {
            return Err(self.err(JsonErrorKind::TrailingCharacters));
        }
        Ok(())
    }

    #[inline]
    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(JsonErrorKind::TooDeep));
        }
        Ok(())
    }

    /// Opens an object (`{`).
    #[inline(always)]
    pub fn object(&mut self) -> Result<ObjIter, JsonError> {
        self.open(b'{', "'{'")?;
        Ok(ObjIter { first: true })
    }

    /// Opens an array (`[`).
    #[inline(always)]
    pub fn array(&mut self) -> Result<ArrIter, JsonError> {
        self.open(b'[', "'['")?;
        Ok(ArrIter { first: true })
    }

    /// Consumes the opening bracket `open` one level deeper.
    #[inline(always)]
    fn open(&mut self, open: u8, expected: &'static str) -> Result<(), JsonError> {
        self.ws();
        if self.buf.get(self.pos) != Some(&open) {
            return Err(self.unexpected(expected));
        }
        self.enter()?;
        self.pos += 1;
        Ok(())
    }

    /// The next key of an object, or `None` at its closing `}`. After a
    /// key the caller must read or skip exactly one value.
    #[inline(always)]
    pub fn next_key(&mut self, it: &mut ObjIter) -> Result<Option<Str<'a>>, JsonError> {
        self.ws();
        match self.buf.get(self.pos) {
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !it.first => {
                self.pos += 1;
                self.ws();
            }
            _ if it.first => {}
            _ => return Err(self.unexpected("',' or '}'")),
        }
        it.first = false;
        if self.buf.get(self.pos) != Some(&b'"') {
            return Err(self.unexpected("a string key"));
        }
        let key = self.string_body()?;
        self.ws();
        if self.buf.get(self.pos) != Some(&b':') {
            return Err(self.unexpected("':'"));
        }
        self.pos += 1;
        Ok(Some(key))
    }

    /// Whether the array has another element (positioned at it), or
    /// `false` at its closing `]`.
    #[inline(always)]
    pub fn next_elem(&mut self, it: &mut ArrIter) -> Result<bool, JsonError> {
        self.ws();
        match self.buf.get(self.pos) {
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if !it.first => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) if it.first => {
                it.first = false;
                Ok(true)
            }
            _ => Err(self.unexpected("',' or ']'")),
        }
    }

    /// A string value.
    #[inline(always)]
    pub fn string(&mut self) -> Result<Str<'a>, JsonError> {
        self.ws();
        if self.buf.get(self.pos) != Some(&b'"') {
            return Err(self.unexpected("a string"));
        }
        self.string_body()
    }

    /// Reads a string starting at the opening quote at `self.pos`.
    #[inline(always)]
    fn string_body(&mut self) -> Result<Str<'a>, JsonError> {
        let start = self.pos + 1;
        let buf = self.buf;
        let i = plain_prefix_end(buf, start);
        if i < buf.len() && buf[i] == b'"' {
            self.pos = i + 1;
            return Ok(Str {
                raw: &buf[start..i],
                escaped: false,
            });
        }
        self.pos = i;
        self.string_slow(start)
    }

    #[cold]
    fn string_slow(&mut self, start: usize) -> Result<Str<'a>, JsonError> {
        let buf = self.buf;
        let mut escaped = false;
        let mut non_ascii = false;
        let mut i = self.pos;
        loop {
            let Some(&b) = buf.get(i) else {
                self.pos = i;
                return Err(self.err(JsonErrorKind::Eof));
            };
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos = i;
                    i = self.escape(i + 1)?;
                }
                0..=0x1f => {
                    self.pos = i;
                    return Err(self.err(JsonErrorKind::ControlInString));
                }
                0x80.. => {
                    non_ascii = true;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        let raw = &buf[start..i];
        if non_ascii && std::str::from_utf8(raw).is_err() {
            self.pos = start;
            return Err(self.err(JsonErrorKind::BadUtf8));
        }
        self.pos = i + 1;
        Ok(Str { raw, escaped })
    }

    /// Validates one escape whose letter is at `i`; returns the index after it.
    fn escape(&self, i: usize) -> Result<usize, JsonError> {
        let bad = |at: usize| JsonError {
            kind: if at >= self.buf.len() {
                JsonErrorKind::Eof
            } else {
                JsonErrorKind::BadEscape
            },
            offset: at,
        };
        match self.buf.get(i) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
            Some(b'u') => {
                let cp = hex4(self.buf, i + 1).ok_or(bad(i + 1))?;
                if (0xD800..0xDC00).contains(&cp) {
                    // A high surrogate must be followed by `\u` + low surrogate.
                    if self.buf.get(i + 5) != Some(&b'\\') || self.buf.get(i + 6) != Some(&b'u') {
                        return Err(bad(i + 5));
                    }
                    let lo = hex4(self.buf, i + 7).ok_or(bad(i + 7))?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(bad(i + 7));
                    }
                    Ok(i + 11)
                } else if (0xDC00..0xE000).contains(&cp) {
                    Err(bad(i))
                } else {
                    Ok(i + 5)
                }
            }
            _ => Err(bad(i)),
        }
    }

    /// A number value; returns its text (validated JSON number grammar).
    #[inline(always)]
    pub fn number(&mut self) -> Result<&'a [u8], JsonError> {
        self.ws();
        let buf = self.buf;
        let start = self.pos;
        let mut i = start;
        if buf.get(i) == Some(&b'-') {
            i += 1;
        }
        match buf.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                i += 1;
                while i < buf.len() && buf[i].is_ascii_digit() {
                    i += 1;
                }
            }
            Some(_) if i == start => return Err(self.unexpected("a number")),
            Some(_) => {
                self.pos = i;
                return Err(self.err(JsonErrorKind::BadNumber));
            }
            None => {
                self.pos = i;
                return Err(self.err(JsonErrorKind::Eof));
            }
        }
        if buf.get(i) == Some(&b'.') {
            i += 1;
            let d = i;
            while i < buf.len() && buf[i].is_ascii_digit() {
                i += 1;
            }
            if i == d {
                self.pos = i;
                return Err(self.err(JsonErrorKind::BadNumber));
            }
        }
        if matches!(buf.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(buf.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let d = i;
            while i < buf.len() && buf[i].is_ascii_digit() {
                i += 1;
            }
            if i == d {
                self.pos = i;
                return Err(self.err(JsonErrorKind::BadNumber));
            }
        }
        self.pos = i;
        Ok(&buf[start..i])
    }

    /// `true` or `false`.
    #[inline]
    pub fn boolean(&mut self) -> Result<bool, JsonError> {
        self.ws();
        if self.buf[self.pos..].starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if self.buf[self.pos..].starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else if self.truncated_literal() {
            Err(JsonError {
                kind: JsonErrorKind::Eof,
                offset: self.buf.len(),
            })
        } else {
            Err(self.unexpected("true or false"))
        }
    }

    /// Consumes `null` if it is next; `Ok(false)` (nothing consumed) otherwise.
    #[inline]
    pub fn null(&mut self) -> Result<bool, JsonError> {
        self.ws();
        if self.buf[self.pos..].starts_with(b"null") {
            self.pos += 4;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Whether the text ends inside a `true`/`false`/`null` literal.
    fn truncated_literal(&self) -> bool {
        let rest = &self.buf[self.pos..];
        !rest.is_empty()
            && [&b"true"[..], b"false", b"null"]
                .iter()
                .any(|lit| rest.len() < lit.len() && lit.starts_with(rest))
    }

    /// Validates and skips one value of any type.
    pub fn skip_value(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => {
                let mut it = self.object()?;
                while self.next_key(&mut it)?.is_some() {
                    self.skip_value()?;
                }
                Ok(())
            }
            Some(b'[') => {
                let mut it = self.array()?;
                while self.next_elem(&mut it)? {
                    self.skip_value()?;
                }
                Ok(())
            }
            Some(b'"') => self.string_body().map(|_| ()),
            Some(b't' | b'f') => self.boolean().map(|_| ()),
            Some(b'n') => {
                if self.null()? {
                    Ok(())
                } else if self.truncated_literal() {
                    Err(JsonError {
                        kind: JsonErrorKind::Eof,
                        offset: self.buf.len(),
                    })
                } else {
                    Err(self.unexpected("a value"))
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            _ => Err(self.unexpected("a value")),
        }
    }

    /// Skips one value and returns its raw text (for nested documents kept for later).
    pub fn raw_value(&mut self) -> Result<&'a [u8], JsonError> {
        self.ws();
        let start = self.pos;
        self.skip_value()?;
        Ok(&self.buf[start..self.pos])
    }
}

fn hex4(buf: &[u8], at: usize) -> Option<u32> {
    let s = buf.get(at..at + 4)?;
    let mut v = 0u32;
    for &b in s {
        let d = (b as char).to_digit(16)?;
        v = v * 16 + d;
    }
    Some(v)
}

/// Decodes the escapes of a string that [`Scanner`] validated.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let c = raw.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        let simple = match c {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        // `\uXXXX`, possibly a surrogate pair (validated by the scanner).
        let mut cp = hex4(raw, i).unwrap_or(0xFFFD);
        i += 4;
        if (0xD800..0xDC00).contains(&cp) {
            let lo = hex4(raw, i + 2).unwrap_or(0xDC00);
            i += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
        let mut tmp = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    }
    out
}

/// Why an integer text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntError {
    /// Not a plain non-negative integer (sign, point, exponent, empty).
    Syntax,
    /// Larger than `u64::MAX`.
    Overflow,
}

impl fmt::Display for IntError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntError::Syntax => f.write_str("not a non-negative integer"),
            IntError::Overflow => f.write_str("does not fit in 64 bits"),
        }
    }
}

/// Parses a non-negative decimal integer text exactly (no float on the way,
/// so ids above 2^53 such as Kraken's `connection_id` survive).
#[inline]
pub fn parse_u64(text: &[u8]) -> Result<u64, IntError> {
    if text.is_empty() {
        return Err(IntError::Syntax);
    }
    let mut v: u64 = 0;
    for &b in text {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(IntError::Syntax);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(d as u64))
            .ok_or(IntError::Overflow)?;
    }
    Ok(v)
}

/// Why a timestamp text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampError;

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an ISO-8601 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+00:00))")
    }
}

/// Parses `2021-04-17T16:43:30.244075Z` into ns since the Unix epoch,
/// exactly (integer arithmetic only). Accepts 0 to 9 fraction digits and a
/// `Z` or `±HH:MM` offset; refuses anything else rather than guessing.
pub fn parse_iso8601_ns(t: &[u8]) -> Result<i64, TimestampError> {
    iso8601_tail_ns(t, iso8601_date_hour_s(t)?)
}

/// Length of the `YYYY-MM-DDTHH` start that [`iso8601_date_hour_s`] reads.
pub const ISO8601_DATE_HOUR_LEN: usize = 13;

fn digits(t: &[u8], at: usize, n: usize) -> Result<i64, TimestampError> {
    let s = t.get(at..at + n).ok_or(TimestampError)?;
    let mut v = 0i64;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(TimestampError);
        }
        v = v * 10 + d as i64;
    }
    Ok(v)
}

fn sep(t: &[u8], at: usize, c: u8) -> Result<(), TimestampError> {
    if t.get(at) == Some(&c) {
        Ok(())
    } else {
        Err(TimestampError)
    }
}

/// Seconds since the epoch at the start of the hour named by the
/// `YYYY-MM-DDTHH` start of `t` (validated), so that texts of the same hour
/// can share it (see [`iso8601_tail_ns`]).
pub fn iso8601_date_hour_s(t: &[u8]) -> Result<i64, TimestampError> {
    let year = digits(t, 0, 4)?;
    sep(t, 4, b'-')?;
    let month = digits(t, 5, 2)?;
    sep(t, 7, b'-')?;
    let day = digits(t, 8, 2)?;
    if !matches!(t.get(10), Some(b'T' | b't' | b' ')) {
        return Err(TimestampError);
    }
    let hour = digits(t, 11, 2)?;
    if !(1..=12).contains(&month) || hour > 23 {
        return Err(TimestampError);
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day < 1 || day > mdays[month as usize - 1] {
        return Err(TimestampError);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600)
}

/// The rest of an ISO-8601 text after its `YYYY-MM-DDTHH` start
/// (`:MM:SS[.f{1,9}](Z|±HH:MM)`), added to `hour_s` from
/// [`iso8601_date_hour_s`]: ns since the epoch.
pub fn iso8601_tail_ns(t: &[u8], hour_s: i64) -> Result<i64, TimestampError> {
    sep(t, 13, b':')?;
    let min = digits(t, 14, 2)?;
    sep(t, 16, b':')?;
    let sec = digits(t, 17, 2)?;
    let mut i = 19;
    let mut nanos = 0i64;
    if t.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < t.len() && t[i].is_ascii_digit() {
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return Err(TimestampError);
        }
        nanos = digits(t, start, n)? * 10i64.pow(9 - n as u32);
    }
    let offset_s = match t.get(i) {
        Some(b'Z' | b'z') if i + 1 == t.len() => 0,
        Some(&s @ (b'+' | b'-')) if i + 6 == t.len() => {
            let oh = digits(t, i + 1, 2)?;
            sep(t, i + 3, b':')?;
            let om = digits(t, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(TimestampError);
            }
            let o = oh * 3600 + om * 60;
            if s == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return Err(TimestampError),
    };
    if min > 59 || sec > 60 {
        return Err(TimestampError);
    }
    Ok((hour_s + min * 60 + sec - offset_s) * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(s: &str) -> Result<(), JsonError> {
        let mut sc = Scanner::new(s.as_bytes());
        sc.skip_value()?;
        sc.finish()
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        for s in [
            r#"{"a":[1,-2.5e+3,0,true,false,null,"x\"\u00e9\ud83d\ude00"],"b":{}}"#,
            " [ ] ",
            r#""caf\u00e9 ☕""#,
            "-0.0",
        ] {
            assert!(skip_all(s).is_ok(), "{s}");
            assert!(serde_json::from_str::<serde_json::Value>(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for s in [
            "{",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "1e",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"a\nb\"",
            "[1] x",
            "{\"a\":1,}",
            "tru",
            "nul",
            "\"abc",
            "[,1]",
        ] {
            assert!(skip_all(s).is_err(), "{s}");
            assert!(serde_json::from_str::<serde_json::Value>(s).is_err(), "{s}");
        }
        let bad_utf8 = b"\"\xff\"";
        assert_eq!(
            Scanner::new(bad_utf8).skip_value().unwrap_err().kind,
            JsonErrorKind::BadUtf8
        );
    }

    #[test]
    fn plain_prefix_end_agrees_with_the_byte_table() {
        let mut buf = Vec::new();
        for b in 0..=255u8 {
            for pos in 0..20 {
                buf.clear();
                buf.extend(std::iter::repeat_n(b'a', pos));
                buf.push(b);
                buf.extend(std::iter::repeat_n(b'z', 11));
                let want = buf
                    .iter()
                    .position(|&c| STR_CLASS[c as usize] != 0)
                    .unwrap_or(buf.len());
                assert_eq!(plain_prefix_end(&buf, 0), want, "byte {b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(skip_all(&deep).unwrap_err().kind, JsonErrorKind::TooDeep);
    }

    #[test]
    fn decodes_escapes() {
        let mut sc = Scanner::new(br#""a\"b\u00e9\ud83d\ude00\n""#);
        let s = sc.string().unwrap();
        assert!(s.escaped);
        assert_eq!(&*s.decoded(), "a\"bé😀\n".as_bytes());
        assert!(s.is("a\"bé😀\n".as_bytes()));
    }

    #[test]
    fn u64_parse_is_exact_beyond_2_pow_53() {
        assert_eq!(
            parse_u64(b"769405522530892351"),
            Ok(769_405_522_530_892_351)
        );
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), Err(IntError::Overflow));
        assert_eq!(parse_u64(b"1.0"), Err(IntError::Syntax));
        assert_eq!(parse_u64(b""), Err(IntError::Syntax));
    }

    #[test]
    fn iso8601_is_exact() {
        assert_eq!(
            parse_iso8601_ns(b"2021-04-17T16:43:30.244075Z"),
            Ok(1_618_677_810_244_075_000)
        );
        assert_eq!(
            parse_iso8601_ns(b"2026-09-30T02:39:53.788628813Z"),
            Ok(1_790_735_993_788_628_813)
        );
        assert_eq!(parse_iso8601_ns(b"1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_iso8601_ns(b"1970-01-01T01:00:00+01:00"),
            Ok(0),
            "offsets are applied"
        );
        assert_eq!(
            parse_iso8601_ns(b"2024-02-29T00:00:00.1Z"),
            Ok(1_709_164_800_100_000_000)
        );
        for bad in [
            &b"2023-02-29T00:00:00Z"[..],
            b"2021-04-17T16:43:30.Z",
            b"2021-04-17T16:43:30.1234567890Z",
            b"2021-04-17T16:43:30",
            b"2021-04-17T24:00:00Z",
            b"2021-13-17T16:43:30Z",
            b"2021-04-17T16:43:30Zjunk",
            b"",
        ] {
            assert_eq!(parse_iso8601_ns(bad), Err(TimestampError), "{:?}", bad);
        }
    }
}
