//! Instrument names (`exchange:symbol`) and the wildcard patterns clients
//! subscribe with: `*` matches any run of characters, `?` one character
//! (`kraken:*`, `*:BTC-USD`, `binance:BTC*`, `*`).

use crate::event::Exchange;

/// Longest pattern accepted, bytes.
pub const MAX_PATTERN_LEN: usize = 128;

/// A checked pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
    wild: bool,
}

impl Pattern {
    /// Checks a pattern; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() || s.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "{s:?} is not an instrument: expected exchange:symbol (1-{MAX_PATTERN_LEN} bytes)"
            ));
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "{s:?} is not an instrument: contains a space or control character"
            ));
        }
        let wild = s.contains(['*', '?']);
        if !wild {
            check_exact(s)?;
        } else if let Some((ex, _)) = s.split_once(':') {
            if !ex.contains(['*', '?']) && Exchange::from_name(ex).is_none() {
                return Err(unknown_exchange(s, ex));
            }
        } else if !s.starts_with('*') {
            // `BTC*` is most likely a symbol without its exchange; `*BTC*`
            // deliberately spans exchanges.
            return Err(format!(
                "{s:?} is not an instrument pattern: expected exchange:symbol with * or ? wildcards, or *"
            ));
        }
        Ok(Pattern {
            text: s.to_owned(),
            wild,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has wildcards (else it names one instrument).
    pub fn is_wild(&self) -> bool {
        self.wild
    }

    /// Whether `name` (`exchange:symbol`) matches.
    pub fn matches(&self, name: &str) -> bool {
        if !self.wild {
            return self.text == name;
        }
        glob(self.text.as_bytes(), name.as_bytes())
    }
}

fn unknown_exchange(s: &str, ex: &str) -> String {
    let names: Vec<&str> = Exchange::ALL.iter().map(|e| e.name()).collect();
    format!(
        "{s:?}: unknown exchange {ex:?}; expected one of {}",
        names.join(", ")
    )
}

/// Checks that `s` names one instrument as `exchange:symbol` with a known
/// exchange (whether the instrument exists is for the caller to say).
pub fn check_exact(s: &str) -> Result<(Exchange, &str), String> {
    let Some((ex, sym)) = s.split_once(':') else {
        return Err(format!(
            "{s:?} is not an instrument: expected exchange:symbol, e.g. kraken:BTC/USD"
        ));
    };
    let exchange = Exchange::from_name(ex).ok_or_else(|| unknown_exchange(s, ex))?;
    if sym.is_empty() {
        return Err(format!("{s:?} is not an instrument: the symbol is empty"));
    }
    Ok((exchange, sym))
}

/// Glob match with `*` and `?`, iterative with one backtrack point.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            // `?` matches one byte; symbols are ASCII in practice, and a
            // multi-byte character simply needs as many `?`.
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell_glob() {
        let m = |p: &str, s: &str| Pattern::parse(p).unwrap().matches(s);
        assert!(m("*", "kraken:BTC/USD"));
        assert!(m("kraken:*", "kraken:BTC/USD"));
        assert!(!m("kraken:*", "binance:BTCUSDT"));
        assert!(m("*:BTC-USD", "coinbase:BTC-USD"));
        assert!(m("coinbase:BTC-*", "coinbase:BTC-EUR"));
        assert!(m("binance:???USDT", "binance:BTCUSDT"));
        assert!(!m("binance:???USDT", "binance:NKNUSDT2"));
        assert!(m("*USD*", "kraken:BTC/USD"));
        assert!(m("kraken:BTC/USD", "kraken:BTC/USD"));
        assert!(!m("kraken:BTC/USD", "kraken:BTC/USDT"));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        for (p, want) in [
            ("", "not an instrument"),
            ("BTC-USD", "expected exchange:symbol"),
            ("nasdaq:AAPL", "unknown exchange \"nasdaq\""),
            ("nasdaq:*", "unknown exchange \"nasdaq\""),
            ("kraken:", "symbol is empty"),
            ("BTC*", "not an instrument pattern"),
            ("kraken:BTC USD", "space or control"),
        ] {
            let e = Pattern::parse(p).unwrap_err();
            assert!(e.contains(want), "{p:?}: {e}");
        }
        assert!(Pattern::parse("*:*").is_ok());
        assert!(Pattern::parse("k*:BTC/USD").is_ok());
    }
}
