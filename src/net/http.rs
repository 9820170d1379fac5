//! The little HTTP/1.1 the transport needs, pure (bytes in, values out): URL
//! parsing, the WebSocket upgrade request and its validation, a one-shot GET
//! request, and a response parser with Content-Length, chunked and
//! read-until-close bodies, each bounded by a configured limit.

use std::fmt;

/// URL schemes the transport speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Ws,
    Wss,
    Http,
    Https,
}

impl Scheme {
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Wss | Scheme::Https)
    }
    pub fn is_ws(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
    fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }
}

/// A parsed `ws://`, `wss://`, `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or IP literal, without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// The `Host:` header value (port omitted when it is the default).
    pub fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.scheme {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{s}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// Why a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// The scheme is not ws, wss, http or https.
    Scheme(String),
    /// The host part is empty or malformed.
    Host(String),
    /// The port is not a number in 1..=65535.
    Port(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme(u) => write!(f, "URL {u:?}: scheme must be ws, wss, http or https"),
            UrlError::Host(u) => write!(f, "URL {u:?}: missing or malformed host"),
            UrlError::Port(u) => write!(f, "URL {u:?}: port must be a number in 1..=65535"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Parses `scheme://host[:port][/path][?query]`. Fragments are dropped;
/// user-info is refused as a malformed host.
pub fn parse_url(s: &str) -> Result<Url, UrlError> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| UrlError::Scheme(s.into()))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" => Scheme::Ws,
        "wss" => Scheme::Wss,
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(UrlError::Scheme(s.into())),
    };
    let rest = rest.split('#').next().unwrap_or("");
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if authority.contains('@') || authority.is_empty() {
        return Err(UrlError::Host(s.into()));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| UrlError::Host(s.into()))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(UrlError::Host(s.into())),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
        return Err(UrlError::Host(s.into()));
    }
    let port = match port {
        None => scheme.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(UrlError::Port(s.into())),
        },
    };
    Ok(Url {
        scheme,
        host: host.to_string(),
        port,
        path,
    })
}

/// The client's WebSocket upgrade request for `url` with base64 `key`.
pub fn ws_upgrade_request(url: &Url, key: &str, extra_headers: &[(String, String)]) -> Vec<u8> {
    let mut r = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        url.path,
        url.host_header()
    );
    for (k, v) in extra_headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A one-shot GET: `Connection: close`, identity encoding only.
pub fn get_request(url: &Url, extra_headers: &[(String, String)]) -> Vec<u8> {
    let mut r = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\
         User-Agent: tickring/{}\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in extra_headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A malformed or over-limit HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// No end of headers within `limit` bytes.
    HeadTooLarge { limit: usize },
    /// The first line is not `HTTP/1.x NNN reason`.
    BadStatusLine(String),
    /// A header line without a colon, or not UTF-8.
    BadHeader(String),
    /// A Content-Length that is not a decimal number, or two that differ.
    BadContentLength(String),
    /// A Transfer-Encoding other than chunked (e.g. gzip).
    UnsupportedTransferEncoding(String),
    /// A malformed chunk size line or chunk terminator.
    BadChunk(String),
    /// The body is larger than `limit` bytes.
    BodyTooLarge { limit: usize },
    /// The connection ended before the body was complete.
    Truncated {
        received: usize,
        expected: Option<usize>,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeadTooLarge { limit } => {
                write!(f, "HTTP response headers exceed {limit} bytes")
            }
            HttpError::BadStatusLine(l) => write!(f, "HTTP status line is malformed: {l:?}"),
            HttpError::BadHeader(l) => write!(f, "HTTP header line is malformed: {l:?}"),
            HttpError::BadContentLength(v) => write!(f, "HTTP Content-Length is invalid: {v:?}"),
            HttpError::UnsupportedTransferEncoding(v) => {
                write!(f, "HTTP Transfer-Encoding {v:?} is not supported (only chunked)")
            }
            HttpError::BadChunk(l) => write!(f, "HTTP chunked body is malformed near {l:?}"),
            HttpError::BodyTooLarge { limit } => {
                write!(f, "HTTP body exceeds the limit of {limit} bytes")
            }
            HttpError::Truncated {
                received,
                expected: Some(e),
            } => write!(f, "HTTP body truncated: connection closed after {received} of {e} bytes"),
            HttpError::Truncated {
                received,
                expected: None,
            } => write!(
                f,
                "HTTP body truncated: connection closed after {received} bytes, before the last chunk"
            ),
        }
    }
}

impl std::error::Error for HttpError {}

/// Status line and headers of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// Bytes the head took, including the final empty line.
    pub head_len: usize,
}

impl ResponseHead {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Parses a response head from the start of `buf`. `Ok(None)`: need more
/// bytes (and `buf` is still under `max_head`).
pub fn parse_response_head(buf: &[u8], max_head: usize) -> Result<Option<ResponseHead>, HttpError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > max_head {
            return Err(HttpError::HeadTooLarge { limit: max_head });
        }
        return Ok(None);
    };
    if end + 4 > max_head {
        return Err(HttpError::HeadTooLarge { limit: max_head });
    }
    let text = std::str::from_utf8(&buf[..end])
        .map_err(|_| HttpError::BadHeader(String::from_utf8_lossy(&buf[..end.min(200)]).into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let bad_status = || HttpError::BadStatusLine(status_line.chars().take(200).collect());
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad_status());
    }
    let code = parts.next().unwrap_or("");
    if code.len() != 3 {
        return Err(bad_status());
    }
    let status: u16 = code.parse().map_err(|_| bad_status())?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| HttpError::BadHeader(line.chars().take(200).collect()))?;
        if k.is_empty() || k.contains(' ') {
            return Err(HttpError::BadHeader(line.chars().take(200).collect()));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok(Some(ResponseHead {
        status,
        reason,
        headers,
        head_len: end + 4,
    }))
}

/// Why the server's answer to the WebSocket upgrade was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The answer was not parseable HTTP.
    Http(HttpError),
    /// The status was not 101 Switching Protocols.
    Status { status: u16, reason: String },
    /// `Upgrade: websocket` or `Connection: upgrade` missing.
    MissingUpgrade,
    /// `Sec-WebSocket-Accept` missing or not the hash of our key.
    BadAccept {
        expected: String,
        got: Option<String>,
    },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Http(e) => write!(f, "websocket handshake: {e}"),
            HandshakeError::Status { status, reason } => write!(
                f,
                "websocket handshake: server answered {status} {reason:?} instead of 101 Switching Protocols"
            ),
            HandshakeError::MissingUpgrade => write!(
                f,
                "websocket handshake: 101 response lacks 'Upgrade: websocket' / 'Connection: Upgrade'"
            ),
            HandshakeError::BadAccept { expected, got } => write!(
                f,
                "websocket handshake: Sec-WebSocket-Accept is {got:?}, expected {expected:?}"
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Checks the server's upgrade response against our key's expected accept.
pub fn validate_upgrade(head: &ResponseHead, expected_accept: &str) -> Result<(), HandshakeError> {
    if head.status != 101 {
        return Err(HandshakeError::Status {
            status: head.status,
            reason: head.reason.clone(),
        });
    }
    if !head.header_has_token("upgrade", "websocket")
        || !head.header_has_token("connection", "upgrade")
    {
        return Err(HandshakeError::MissingUpgrade);
    }
    let got = head.header("sec-websocket-accept");
    if got != Some(expected_accept) {
        return Err(HandshakeError::BadAccept {
            expected: expected_accept.to_string(),
            got: got.map(str::to_string),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// Reading `n` more bytes of chunk data.
    Data(usize),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading trailer lines after the last chunk.
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked(Chunk),
    UntilClose,
}

/// Decodes a response body into an owned buffer, bounded by `limit`.
#[derive(Debug)]
pub struct BodyDecoder {
    framing: Framing,
    limit: usize,
    body: Vec<u8>,
    /// Partial size/trailer line (chunked only).
    line: Vec<u8>,
    done: bool,
}

impl BodyDecoder {
    /// Chooses the framing from the response head (RFC 9112 section 6.3).
    pub fn for_response(head: &ResponseHead, limit: usize) -> Result<BodyDecoder, HttpError> {
        let framing = if head.status / 100 == 1 || head.status == 204 || head.status == 304 {
            Framing::Length(0)
        } else if let Some(te) = head.header("transfer-encoding") {
            if !te.trim().eq_ignore_ascii_case("chunked") {
                return Err(HttpError::UnsupportedTransferEncoding(te.to_string()));
            }
            Framing::Chunked(Chunk::Size)
        } else if let Some(cl) = head.header("content-length") {
            for (k, v) in &head.headers {
                if k.eq_ignore_ascii_case("content-length") && v != cl {
                    return Err(HttpError::BadContentLength(format!("{cl} vs {v}")));
                }
            }
            let n: usize = cl
                .parse()
                .map_err(|_| HttpError::BadContentLength(cl.to_string()))?;
            if n > limit {
                return Err(HttpError::BodyTooLarge { limit });
            }
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let mut d = BodyDecoder {
            framing,
            limit,
            body: Vec::new(),
            line: Vec::new(),
            done: false,
        };
        if let Framing::Length(n) = framing {
            d.body.reserve_exact(n);
            d.done = n == 0;
        }
        Ok(d)
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The body received so far.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    fn push(&mut self, data: &[u8]) -> Result<(), HttpError> {
        if self.body.len() + data.len() > self.limit {
            return Err(HttpError::BodyTooLarge { limit: self.limit });
        }
        self.body.extend_from_slice(data);
        Ok(())
    }

    /// Reads a CRLF-terminated line (bounded); returns it once complete.
    fn take_line(&mut self, data: &mut &[u8]) -> Result<Option<String>, HttpError> {
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.line.extend_from_slice(&data[..=i]);
                *data = &data[i + 1..];
                let l = std::mem::take(&mut self.line);
                let s = String::from_utf8_lossy(&l).into_owned();
                match s.strip_suffix("\r\n") {
                    Some(s) => Ok(Some(s.to_string())),
                    None => Err(HttpError::BadChunk(s)),
                }
            }
            None => {
                self.line.extend_from_slice(data);
                *data = &[];
                if self.line.len() > 4096 {
                    return Err(HttpError::BadChunk(
                        String::from_utf8_lossy(&self.line[..64]).into_owned(),
                    ));
                }
                Ok(None)
            }
        }
    }

    /// Feeds body bytes. Bytes after the end of the body are ignored (we
    /// always send `Connection: close`).
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), HttpError> {
        while !data.is_empty() && !self.done {
            match self.framing {
                Framing::UntilClose => {
                    self.push(data)?;
                    data = &[];
                }
                Framing::Length(n) => {
                    let take = (n - self.body.len()).min(data.len());
                    self.push(&data[..take])?;
                    data = &data[take..];
                    self.done = self.body.len() == n;
                }
                Framing::Chunked(Chunk::Size) => {
                    if let Some(l) = self.take_line(&mut data)? {
                        let hex = l.split(';').next().unwrap_or("").trim();
                        let n = usize::from_str_radix(hex, 16)
                            .map_err(|_| HttpError::BadChunk(l.clone()))?;
                        if self.body.len().saturating_add(n) > self.limit {
                            return Err(HttpError::BodyTooLarge { limit: self.limit });
                        }
                        self.framing = Framing::Chunked(if n == 0 {
                            Chunk::Trailer
                        } else {
                            Chunk::Data(n)
                        });
                    }
                }
                Framing::Chunked(Chunk::Data(n)) => {
                    let take = n.min(data.len());
                    self.push(&data[..take])?;
                    data = &data[take..];
                    self.framing = Framing::Chunked(if take == n {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(n - take)
                    });
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if let Some(l) = self.take_line(&mut data)? {
                        if !l.is_empty() {
                            return Err(HttpError::BadChunk(l));
                        }
                        self.framing = Framing::Chunked(Chunk::Size);
                    }
                }
                Framing::Chunked(Chunk::Trailer) => {
                    if let Some(l) = self.take_line(&mut data)? {
                        self.done = l.is_empty();
                    }
                }
            }
        }
        Ok(())
    }

    /// The connection ended: completes a read-until-close body, or reports
    /// a truncated one.
    pub fn eof(&mut self) -> Result<(), HttpError> {
        match self.framing {
            _ if self.done => Ok(()),
            Framing::UntilClose => {
                self.done = true;
                Ok(())
            }
            Framing::Length(n) => Err(HttpError::Truncated {
                received: self.body.len(),
                expected: Some(n),
            }),
            Framing::Chunked(_) => Err(HttpError::Truncated {
                received: self.body.len(),
                expected: None,
            }),
        }
    }

    /// Takes the finished body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_url_accepts_the_four_schemes_ports_paths_and_ipv6() {
        let u = parse_url("wss://stream.binance.com:9443/ws/btcusdt@depth").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Wss, "stream.binance.com", 9443, "/ws/btcusdt@depth")
        );
        let u =
            parse_url("https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000").unwrap();
        assert_eq!(
            (u.port, u.path.as_str()),
            (443, "/api/v3/depth?symbol=BTCUSDT&limit=1000")
        );
        assert_eq!(u.host_header(), "api.binance.com");
        let u = parse_url("ws://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (8080, "/", "127.0.0.1:8080")
        );
        let u = parse_url("http://[::1]:81?x=1#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 81, "/?x=1")
        );
        assert_eq!(u.host_header(), "[::1]:81");
    }

    #[test]
    fn parse_url_refuses_bad_urls_naming_the_part() {
        assert!(matches!(parse_url("ftp://x/"), Err(UrlError::Scheme(_))));
        assert!(matches!(parse_url("x"), Err(UrlError::Scheme(_))));
        assert!(matches!(parse_url("ws:///p"), Err(UrlError::Host(_))));
        assert!(matches!(parse_url("ws://u@h/"), Err(UrlError::Host(_))));
        assert!(matches!(parse_url("ws://h:0/"), Err(UrlError::Port(_))));
        assert!(matches!(parse_url("ws://h:99999/"), Err(UrlError::Port(_))));
    }

    fn head(s: &str) -> ResponseHead {
        parse_response_head(s.as_bytes(), 16384).unwrap().unwrap()
    }

    #[test]
    fn response_head_parses_incrementally_and_bounded() {
        let r = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello";
        for cut in 0..r.len() - 5 {
            assert_eq!(
                parse_response_head(&r.as_bytes()[..cut], 16384).unwrap(),
                None,
                "cut {cut}"
            );
        }
        let h = head(r);
        assert_eq!(
            (h.status, h.reason.as_str(), h.head_len),
            (200, "OK", r.len() - 5)
        );
        assert_eq!(h.header("x-a"), Some("b"));
        assert_eq!(
            parse_response_head(&[b'a'; 100], 50),
            Err(HttpError::HeadTooLarge { limit: 50 })
        );
        assert!(matches!(
            parse_response_head(b"SSH-2.0-OpenSSH\r\n\r\n", 100),
            Err(HttpError::BadStatusLine(_))
        ));
        assert!(matches!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", 100),
            Err(HttpError::BadHeader(_))
        ));
    }

    #[test]
    fn upgrade_validation_names_what_is_wrong() {
        let acc = crate::net::ws::accept_key("dGhlIHNhbXBsZSBub25jZQ==");
        let ok = head(&format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {acc}\r\n\r\n"
        ));
        assert_eq!(validate_upgrade(&ok, &acc), Ok(()));
        let e = validate_upgrade(&head("HTTP/1.1 200 OK\r\n\r\n"), &acc).unwrap_err();
        assert_eq!(
            e,
            HandshakeError::Status {
                status: 200,
                reason: "OK".into()
            }
        );
        let bad = head("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: xyz\r\n\r\n");
        let e = validate_upgrade(&bad, &acc).unwrap_err();
        assert!(e.to_string().contains("Sec-WebSocket-Accept"), "{e}");
        let noup = head("HTTP/1.1 101 S\r\nConnection: upgrade\r\n\r\n");
        assert_eq!(
            validate_upgrade(&noup, &acc),
            Err(HandshakeError::MissingUpgrade)
        );
    }

    fn decode(h: &str, body: &[u8], chunk: usize, limit: usize) -> Result<Vec<u8>, HttpError> {
        let mut d = BodyDecoder::for_response(&head(h), limit)?;
        for c in body.chunks(chunk.max(1)) {
            d.feed(c)?;
        }
        d.eof()?;
        Ok(d.into_body())
    }

    #[test]
    fn bodies_content_length_chunked_and_until_close_at_any_split() {
        let cl = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
        let ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let uc = "HTTP/1.1 200 OK\r\n\r\n";
        let chunked = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        for split in 1..chunked.len() {
            assert_eq!(
                decode(cl, b"hello world", split, 100).unwrap(),
                b"hello world"
            );
            assert_eq!(decode(ch, chunked, split, 100).unwrap(), b"hello world");
            assert_eq!(
                decode(uc, b"hello world", split, 100).unwrap(),
                b"hello world"
            );
        }
        assert_eq!(
            decode("HTTP/1.1 204 No Content\r\n\r\n", b"", 1, 10).unwrap(),
            b""
        );
    }

    #[test]
    fn bodies_over_limit_truncated_or_malformed_are_errors() {
        let cl = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
        let ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            decode(cl, b"hello world", 3, 5),
            Err(HttpError::BodyTooLarge { limit: 5 })
        );
        assert_eq!(
            decode(ch, b"ff\r\n", 3, 5),
            Err(HttpError::BodyTooLarge { limit: 5 })
        );
        assert_eq!(
            decode(cl, b"hello", 3, 100),
            Err(HttpError::Truncated {
                received: 5,
                expected: Some(11)
            })
        );
        assert!(matches!(
            decode(ch, b"zz\r\n", 3, 100),
            Err(HttpError::BadChunk(_))
        ));
        assert!(matches!(
            decode(ch, b"2\r\nabX\r\n", 3, 100),
            Err(HttpError::BadChunk(_))
        ));
        assert!(matches!(
            decode(ch, b"2\r\nab\r\n", 3, 100),
            Err(HttpError::Truncated { expected: None, .. })
        ));
        assert!(matches!(
            BodyDecoder::for_response(
                &head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
                10
            ),
            Err(HttpError::UnsupportedTransferEncoding(_))
        ));
        assert!(matches!(
            BodyDecoder::for_response(&head("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), 10),
            Err(HttpError::BadContentLength(_))
        ));
    }
}
