//! Text surgery on captured lines: fault injection and per-lap sequence
//! rewriting. Each function edits the line's text in place of one number or
//! string and leaves every other byte as recorded.

/// Byte range of the unsigned integer right after `"field":` (first occurrence).
fn u64_field_range(text: &str, field: &str) -> Option<(usize, usize)> {
    let pat = format!("\"{field}\":");
    let start = text.find(&pat)? + pat.len();
    let b = text.as_bytes();
    let mut s = start;
    while b.get(s) == Some(&b' ') {
        s += 1;
    }
    let len = b[s..].iter().take_while(|c| c.is_ascii_digit()).count();
    (len > 0).then_some((s, s + len))
}

/// Reads the unsigned integer of `"field":` (first occurrence).
pub fn read_u64_field(text: &str, field: &str) -> Option<u64> {
    let (a, b) = u64_field_range(text, field)?;
    text[a..b].parse().ok()
}

/// Adds `delta` to the unsigned integer of each listed field (first
/// occurrence of each). `None` when a field is missing or would overflow.
pub fn bump_u64_fields(text: &str, fields: &[&str], delta: u64) -> Option<String> {
    let mut out = text.to_string();
    for field in fields {
        let (a, b) = u64_field_range(&out, field)?;
        let v: u64 = out[a..b].parse().ok()?;
        let nv = v.checked_add(delta)?;
        out.replace_range(a..b, &nv.to_string());
    }
    Some(out)
}

/// Kraken: changes the last digit of the first non-zero `qty` so that the
/// book's CRC-32 no longer matches the message's `checksum` (the checksum is
/// computed over the quantity text, so any digit change breaks it). The level
/// stays a non-zero quantity, so the message still parses and applies.
pub fn kraken_corrupt_qty(text: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = text[from..].find("\"qty\":") {
        let s = from + i + "\"qty\":".len();
        let num_len = text.as_bytes()[s..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b'.')
            .count();
        let num = &text[s..s + num_len];
        if num.bytes().any(|c| (b'1'..=b'9').contains(&c)) {
            let last = s + num_len - 1;
            let d = text.as_bytes()[last];
            let nd = if d == b'9' { b'8' } else { d + 1 };
            let mut out = text.to_string();
            out.replace_range(last..last + 1, std::str::from_utf8(&[nd]).ok()?);
            return Some(out);
        }
        from = s + num_len;
    }
    None
}

/// Makes the first string literal that holds a decimal number (a price or a
/// size: `"0.3521"`) negative (`"-0.3521"`), which no feed accepts.
pub fn negate_first_decimal_string(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'"' && b[i + 1].is_ascii_digit() {
            let body = b[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == b'.')
                .count();
            if b.get(i + 1 + body) == Some(&b'"') && b[i + 1..i + 1 + body].contains(&b'.') {
                let mut out = text.to_string();
                out.insert(i + 1, '-');
                return Some(out);
            }
        }
        i += 1;
    }
    None
}

/// Broken JSON: the first half of the line (cut on a character boundary).
pub fn broken_json(text: &str) -> String {
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_string()
}

/// Invalid UTF-8: the line with the bytes `0xC3 0x28` (a lead byte followed
/// by a non-continuation byte) inserted after its first byte.
pub fn invalid_utf8(text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(text.len() + 2);
    let first = text.chars().next().map_or(0, char::len_utf8);
    v.extend_from_slice(&text.as_bytes()[..first]);
    v.extend_from_slice(&[0xC3, 0x28]);
    v.extend_from_slice(&text.as_bytes()[first..]);
    v
}

/// A valid JSON text of exactly `size` bytes (at least 16):
/// `{"oversize":"xxx…"}`.
pub fn oversize(size: usize) -> String {
    let size = size.max(16);
    let mut s = String::with_capacity(size);
    s.push_str("{\"oversize\":\"");
    let fill = size - s.len() - 2;
    s.extend(std::iter::repeat_n('x', fill));
    s.push_str("\"}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_changes_only_the_named_numbers() {
        let t = r#"{"stream":"x@depth","data":{"e":"depthUpdate","U":499869750,"u":499869752,"b":[["0.35","1.0"]]}}"#;
        let o = bump_u64_fields(t, &["U", "u"], 10).unwrap();
        assert_eq!(
            o,
            t.replace("499869750", "499869760")
                .replace("499869752", "499869762")
        );
        assert_eq!(read_u64_field(&o, "u"), Some(499_869_762));
        assert_eq!(bump_u64_fields(t, &["nope"], 1), None);
    }

    #[test]
    fn kraken_corruption_changes_one_digit_of_a_nonzero_qty() {
        let t = r#"{"asks":[{"price":62806.5,"qty":0.00000000},{"price":62809.9,"qty":0.00005100}],"checksum":1}"#;
        let o = kraken_corrupt_qty(t).unwrap();
        assert_eq!(o, t.replace("0.00005100", "0.00005101"));
        assert_eq!(kraken_corrupt_qty(r#"{"qty":0.0}"#), None);
        assert_eq!(
            kraken_corrupt_qty(r#"{"qty":1.29}"#).unwrap(),
            r#"{"qty":1.28}"#
        );
    }

    #[test]
    fn negation_hits_the_first_decimal_string() {
        let t = r#"{"type":"l2update","product_id":"SKL-BTC","changes":[["sell","0.00001305","985.1"]]}"#;
        assert_eq!(
            negate_first_decimal_string(t).unwrap(),
            t.replace("\"0.00001305", "\"-0.00001305")
        );
        assert_eq!(negate_first_decimal_string(r#"{"t":"12"}"#), None);
    }

    #[test]
    fn broken_invalid_and_oversize_are_what_they_say() {
        let t = r#"{"a":"é-long-enough"}"#;
        assert!(serde_json::from_str::<serde_json::Value>(&broken_json(t)).is_err());
        assert!(std::str::from_utf8(&invalid_utf8(t)).is_err());
        let o = oversize(1000);
        assert_eq!(o.len(), 1000);
        assert!(serde_json::from_str::<serde_json::Value>(&o).is_ok());
    }
}
