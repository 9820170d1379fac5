//! Differential: the scanner accepts exactly what serde_json accepts (up to
//! the scanner's nesting limit and serde_json's refusal of out-of-range numbers).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tickring::feed::json::{Scanner, MAX_DEPTH};

fn depth(data: &[u8]) -> u32 {
    let (mut d, mut max, mut in_str, mut esc) = (0u32, 0u32, false, false);
    for &b in data {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                d += 1;
                max = max.max(d);
            }
            b']' | b'}' => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fuzz_target!(|data: &[u8]| {
    let mut sc = Scanner::new(data);
    let ours = sc.skip_value().and_then(|()| sc.finish());
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    match (&ours, &theirs) {
        (Err(e), Ok(_)) => {
            assert!(depth(data) > MAX_DEPTH, "scanner refused valid JSON: {e}");
        }
        (Ok(()), Err(e)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("number out of range") || msg.contains("recursion limit"),
                "scanner accepted invalid JSON: {msg}"
            );
        }
        _ => {}
    }
});
