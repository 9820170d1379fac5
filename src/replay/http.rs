//! The HTTP side of the port: request heads (for the WebSocket upgrade and
//! REST), and the Binance REST depth snapshot `GET /api/v3/depth`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Capture, StartError};

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub path: String,
    /// Lower-case header names.
    pub headers: Vec<(String, String)>,
    /// Bytes the head took in the buffer.
    pub len: usize,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    pub fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("upgrade", "websocket")
    }

    pub fn wants_close(&self) -> bool {
        self.header_has_token("connection", "close")
    }
}

/// Why a request head could not be read.
#[derive(Debug)]
pub enum HeadError {
    /// Not HTTP (httparse's reason).
    Malformed(String),
    /// Longer than the limit.
    TooLarge,
}

pub const MAX_HEAD: usize = 16 * 1024;

/// Parses a complete head at the start of `buf`; `Ok(None)` when more
/// bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            method: req.method.unwrap_or("").to_string(),
            path: req.path.unwrap_or("/").to_string(),
            headers: req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            len,
        })),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// A complete HTTP/1.1 response with a JSON body.
pub fn response(status: u16, reason: &str, body: &str, close: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\n",
        body.len()
    );
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    let mut v = r.into_bytes();
    v.extend_from_slice(body.as_bytes());
    v
}

#[derive(Deserialize)]
struct RestDepth<'a> {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    #[serde(borrow)]
    bids: Vec<&'a RawValue>,
    #[serde(borrow)]
    asks: Vec<&'a RawValue>,
}

/// One REST depth answer, kept as recorded.
#[derive(Debug)]
struct Snapshot {
    text: String,
    last_update_id: u64,
    /// Each level's text (`["0.35210000","672.00000000"]`), as recorded.
    bids: Vec<String>,
    asks: Vec<String>,
}

/// The Binance REST depth snapshots, by upper-case symbol.
#[derive(Debug, Default)]
pub struct RestSnapshots {
    by_symbol: HashMap<String, Snapshot>,
}

impl RestSnapshots {
    /// Loads one REST answer per line; `symbols` names each line's symbol in
    /// order (there must be exactly one per line).
    pub fn load(
        path: &Path,
        symbols: &[String],
        _capture: &Capture,
    ) -> Result<RestSnapshots, StartError> {
        let err = |line: usize, what: String| StartError::Snapshot {
            file: path.to_path_buf(),
            line,
            what,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(0, e.to_string()))?;
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        if lines.len() != symbols.len() {
            return Err(err(
                0,
                format!(
                    "{} snapshot lines but {} --snapshot-symbols: name one symbol per line, in order",
                    lines.len(),
                    symbols.len()
                ),
            ));
        }
        let mut by_symbol = HashMap::new();
        for ((i, line), sym) in lines.into_iter().zip(symbols) {
            let d: RestDepth = serde_json::from_str(line)
                .map_err(|e| err(i + 1, format!("not a REST depth answer: {e}")))?;
            let snap = Snapshot {
                text: line.to_string(),
                last_update_id: d.last_update_id,
                bids: d.bids.iter().map(|r| r.get().to_string()).collect(),
                asks: d.asks.iter().map(|r| r.get().to_string()).collect(),
            };
            if by_symbol.insert(sym.to_ascii_uppercase(), snap).is_some() {
                return Err(err(i + 1, format!("symbol {sym} named twice")));
            }
        }
        Ok(RestSnapshots { by_symbol })
    }

    /// Answers `GET /api/v3/depth?...`: (status, reason, body). `lap_offset`
    /// maps a lower-case symbol to what is added to `lastUpdateId` (loop laps).
    pub fn depth(
        &self,
        query: &str,
        lap_offset: impl Fn(&str) -> u64,
    ) -> (u16, &'static str, String) {
        let mut symbol = None;
        let mut limit = None;
        for kv in query.split('&') {
            match kv.split_once('=') {
                Some(("symbol", v)) => symbol = Some(v),
                Some(("limit", v)) => limit = Some(v),
                _ => {}
            }
        }
        let bad = |code: i32, msg: &str| {
            (
                400,
                "Bad Request",
                format!(r#"{{"code":{code},"msg":"{msg}"}}"#),
            )
        };
        let Some(symbol) = symbol.filter(|s| !s.is_empty()) else {
            return bad(
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            );
        };
        let limit = match limit {
            None => 100,
            Some(l) => match l.parse::<usize>() {
                Ok(l) if l > 0 => l.min(5000),
                _ => {
                    return bad(
                        -1100,
                        "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
                    )
                }
            },
        };
        let Some(s) = self.by_symbol.get(symbol) else {
            return bad(-1121, "Invalid symbol.");
        };
        let offset = lap_offset(&symbol.to_ascii_lowercase());
        if offset == 0 && limit >= s.bids.len() && limit >= s.asks.len() {
            return (200, "OK", s.text.clone());
        }
        let n_b = limit.min(s.bids.len());
        let n_a = limit.min(s.asks.len());
        let body = format!(
            r#"{{"lastUpdateId":{},"bids":[{}],"asks":[{}]}}"#,
            s.last_update_id + offset,
            s.bids[..n_b].join(","),
            s.asks[..n_a].join(",")
        );
        (200, "OK", body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Exchange;
    use crate::replay::capture::fixtures_dir;

    fn snaps() -> RestSnapshots {
        let f = fixtures_dir();
        let cap = Capture::load(
            Exchange::Binance,
            &[f.join("binance/combined_depth_100ms.jsonl")],
        )
        .unwrap();
        let syms: Vec<String> = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]
            .map(String::from)
            .to_vec();
        RestSnapshots::load(&f.join("binance/depth_snapshot_rest.jsonl"), &syms, &cap).unwrap()
    }

    #[test]
    fn depth_serves_the_recorded_line_and_truncates_to_limit() {
        let s = snaps();
        let full =
            std::fs::read_to_string(fixtures_dir().join("binance/depth_snapshot_rest.jsonl"))
                .unwrap();
        let first = full.lines().next().unwrap();
        assert_eq!(
            s.depth("symbol=NKNUSDT&limit=1000", |_| 0),
            (200, "OK", first.to_string())
        );
        let (st, _, b) = s.depth("symbol=NKNUSDT&limit=2", |_| 5);
        assert_eq!(st, 200);
        // Levels keep their recorded text; lastUpdateId carries the lap offset.
        assert_eq!(
            b,
            r#"{"lastUpdateId":499869757,"bids":[["0.35210000","672.00000000"],["0.35200000","1144.00000000"]],"asks":[["0.35250000","3959.00000000"],["0.35260000","3199.00000000"]]}"#
        );
    }

    #[test]
    fn depth_errors_are_binance_error_bodies() {
        let s = snaps();
        assert_eq!(
            s.depth("symbol=NOPE&limit=5", |_| 0),
            (
                400,
                "Bad Request",
                r#"{"code":-1121,"msg":"Invalid symbol."}"#.to_string()
            )
        );
        assert_eq!(s.depth("limit=5", |_| 0).0, 400);
        assert_eq!(s.depth("symbol=BLZETH&limit=x", |_| 0).0, 400);
    }

    #[test]
    fn snapshot_symbols_must_match_lines() {
        let f = fixtures_dir();
        let cap = Capture::load(
            Exchange::Binance,
            &[f.join("binance/combined_depth_100ms.jsonl")],
        )
        .unwrap();
        let e = RestSnapshots::load(
            &f.join("binance/depth_snapshot_rest.jsonl"),
            &["A".into()],
            &cap,
        )
        .unwrap_err();
        assert!(e.to_string().contains("4 snapshot lines but 1"), "{e}");
    }

    #[test]
    fn head_parsing() {
        let req = b"GET /stream?streams=a@trade HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\nrest";
        let h = parse_head(req).unwrap().unwrap();
        assert_eq!(h.path, "/stream?streams=a@trade");
        assert!(h.is_websocket_upgrade());
        assert_eq!(h.len, req.len() - 4);
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost").unwrap().is_none());
        assert!(parse_head(b"\x16\x03\x01garbage\r\n\r\n").is_err());
    }
}
