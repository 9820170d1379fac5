//! Gateway configuration: `/etc/tickring/gateway.toml`.
//!
//! Every key lives under a top-level `[gateway]` table (that is how
//! `tickring validate` tells a gateway config from a feed config). Parsing
//! refuses unknown keys; [`GatewayConfig::load`] then checks every value,
//! and each error names the file, the key and what was expected, in the
//! same style as the feed configs ([`crate::config::ConfigError`]).
//!
//! ```toml
//! [gateway]
//! listen = "127.0.0.1:8080"          # ignored when systemd passes a socket
//! rings = ["coinbase", "kraken"]     # ring names or paths
//! ring_dir = "/dev/shm/tickring"     # and/or: serve every *.ring found here
//! # ring_dir = ["/dev/hugepages/tickring", "/dev/shm/tickring"]  # or in each of these
//! tokens_file = "/etc/tickring/gateway.tokens"   # or tokens_credential = "tokens"
//! client_queue = 4096                # messages per WebSocket client
//! max_clients = 10000
//! max_request_bytes = 16384          # largest client message
//! allowed_origins = ["https://ops.example.com"]
//! ready_max_age_ms = 5000            # ring freshness threshold for /ready
//! status_instruments = ["kraken:BTC/USD"]   # top of book on the status page
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::ring;

/// The file as written (every key under `[gateway]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    pub gateway: GatewayConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on when no socket is passed by systemd.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Rings to serve: bare names (looked up in /dev/hugepages/tickring,
    /// then /dev/shm/tickring) or paths of `.ring` files.
    #[serde(default)]
    pub rings: Vec<String>,
    /// A directory, or a list of them, whose `*.ring` files are all served
    /// (rescanned, so collectors started later are picked up; a directory
    /// that does not exist yet is simply empty).
    pub ring_dir: Option<RingDirs>,
    /// File of bearer tokens, one per line; `/v1/*` then requires one.
    pub tokens_file: Option<PathBuf>,
    /// Name of a systemd credential (`LoadCredential=NAME:...`) holding the
    /// tokens, read from `$CREDENTIALS_DIRECTORY/NAME`.
    pub tokens_credential: Option<String>,
    /// Messages queued per WebSocket client before it is dropped as too slow.
    #[serde(default = "default_client_queue")]
    pub client_queue: usize,
    /// Concurrent WebSocket clients; more are refused with 503.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Largest message (and frame) a client may send, bytes.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: usize,
    /// Browser origins allowed to open WebSockets and read the REST API.
    /// Requests without an `Origin` header (non-browser clients) and
    /// same-origin requests are always allowed; `"*"` allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// A ring is fresh for /ready when its writer's heartbeat or its last
    /// event is at most this old.
    #[serde(default = "default_ready_age")]
    pub ready_max_age_ms: u64,
    /// Instruments whose top of book the status page shows by default.
    #[serde(default)]
    pub status_instruments: Vec<String>,
    /// Longest sleep of an idle ring reader between polls, microseconds
    /// (it backs off from 10 us to this): the most latency a quiet spell
    /// adds to the next event.
    #[serde(default = "default_idle_sleep")]
    pub idle_sleep_us: u64,
    /// On shutdown, how long open connections get to finish, ms.
    #[serde(default = "default_drain")]
    pub drain_ms: u64,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_client_queue() -> usize {
    4096
}
fn default_max_clients() -> usize {
    10_000
}
fn default_max_request() -> usize {
    16 << 10
}
fn default_ready_age() -> u64 {
    5_000
}
fn default_idle_sleep() -> u64 {
    200
}
fn default_drain() -> u64 {
    2_000
}

/// A configured ring: its name (as shown in the API) and the argument to
/// resolve (a name or a path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingSource {
    pub name: String,
    pub arg: String,
}

/// `ring_dir`: one directory or a list (huge pages and /dev/shm, so the
/// gateway finds rings whichever backing a collector got).
#[derive(Debug, Clone)]
pub enum RingDirs {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl<'de> Deserialize<'de> for RingDirs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RingDirs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a directory path or a list of directory paths")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RingDirs, E> {
                Ok(RingDirs::One(v.into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<RingDirs, A::Error> {
                let mut v = Vec::new();
                while let Some(p) = a.next_element::<PathBuf>()? {
                    v.push(p);
                }
                Ok(RingDirs::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A gateway config that passed every check, with defaults resolved.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub file: PathBuf,
    pub listen: SocketAddr,
    pub rings: Vec<RingSource>,
    /// Directories scanned for `*.ring` files (empty: only `rings`).
    pub ring_dirs: Vec<PathBuf>,
    /// SHA-256 digests of the accepted tokens; `None` = no auth.
    pub tokens: Option<Vec<[u8; 32]>>,
    pub tokens_path: Option<PathBuf>,
    pub client_queue: usize,
    pub max_clients: usize,
    pub max_request_bytes: usize,
    pub allowed_origins: Vec<String>,
    pub ready_max_age: Duration,
    pub status_instruments: Vec<String>,
    pub idle_sleep: Duration,
    pub drain: Duration,
}

/// Shortest token accepted: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

impl GatewayFile {
    /// Whether a TOML text is a gateway config (has a top-level `gateway`
    /// table) rather than a feed config.
    pub fn is_gateway_config(text: &str) -> bool {
        text.parse::<toml::Table>()
            .map(|t| t.contains_key("gateway"))
            .unwrap_or(false)
    }

    /// Reads, parses and checks a gateway config.
    pub fn load(path: &Path) -> Result<GatewaySettings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: String::new(),
            problem: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks `text` as the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<GatewaySettings, ConfigError> {
        let raw: GatewayFile = toml::from_str(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: e
                .span()
                .map(|s| crate::config::key_at(text, s.start))
                .unwrap_or_default(),
            problem: e.message().to_owned(),
        })?;
        raw.gateway.check(path)
    }
}

impl GatewayConfig {
    fn check(mut self, path: &Path) -> Result<GatewaySettings, ConfigError> {
        let err = |key: &str, problem: String| ConfigError {
            file: path.to_owned(),
            key: format!("gateway.{key}"),
            problem,
        };
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            err(
                "listen",
                format!("{:?} is not an address like 127.0.0.1:8080", self.listen),
            )
        })?;
        let ring_dirs = match self.ring_dir.take() {
            None => Vec::new(),
            Some(RingDirs::One(d)) => vec![d],
            Some(RingDirs::Many(v)) if v.is_empty() => {
                return Err(err(
                    "ring_dir",
                    "an empty list: name at least one directory".into(),
                ))
            }
            Some(RingDirs::Many(v)) => v,
        };
        if self.rings.is_empty() && ring_dirs.is_empty() {
            return Err(err(
                "rings",
                "no rings to serve: list ring names or paths in `rings`, or set `ring_dir`".into(),
            ));
        }
        let mut rings = Vec::new();
        for (i, r) in self.rings.iter().enumerate() {
            let key = format!("rings[{i}]");
            let name = if r.contains('/') {
                let p = Path::new(r);
                if p.extension().and_then(|e| e.to_str()) != Some("ring") {
                    return Err(err(&key, format!("{r:?} is not a path ending in .ring")));
                }
                let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                ring::check_name(stem).map_err(|e| err(&key, e.to_string()))?;
                stem.to_owned()
            } else {
                ring::check_name(r).map_err(|e| err(&key, e.to_string()))?;
                r.clone()
            };
            if rings.iter().any(|r: &RingSource| r.name == name) {
                return Err(err(&key, format!("ring {name:?} is listed twice")));
            }
            rings.push(RingSource {
                name,
                arg: r.clone(),
            });
        }
        for (i, d) in ring_dirs.iter().enumerate() {
            if !d.is_absolute() {
                return Err(err(
                    "ring_dir",
                    format!("{} is not an absolute path", d.display()),
                ));
            }
            if ring_dirs[..i].contains(d) {
                return Err(err("ring_dir", format!("{} is listed twice", d.display())));
            }
        }
        let tokens_path = match (&self.tokens_file, &self.tokens_credential) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "tokens_credential",
                    "set either tokens_file or tokens_credential, not both".into(),
                ))
            }
            (Some(f), None) => Some(f.clone()),
            (None, Some(name)) => {
                if name.is_empty() || name.contains('/') {
                    return Err(err(
                        "tokens_credential",
                        format!("{name:?} is not a credential name"),
                    ));
                }
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    err(
                        "tokens_credential",
                        "$CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=)"
                            .into(),
                    )
                })?;
                Some(Path::new(&dir).join(name))
            }
            (None, None) => None,
        };
        let key = if self.tokens_credential.is_some() {
            "tokens_credential"
        } else {
            "tokens_file"
        };
        let tokens = match &tokens_path {
            None => None,
            Some(p) => Some(load_tokens(p).map_err(|problem| err(key, problem))?),
        };
        if !(1..=1 << 20).contains(&self.client_queue) {
            return Err(err(
                "client_queue",
                format!("{} is not in 1..=1048576", self.client_queue),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_clients) {
            return Err(err(
                "max_clients",
                format!("{} is not in 1..=1000000", self.max_clients),
            ));
        }
        if !(256..=1 << 24).contains(&self.max_request_bytes) {
            return Err(err(
                "max_request_bytes",
                format!("{} is not in 256..=16777216", self.max_request_bytes),
            ));
        }
        for (i, o) in self.allowed_origins.iter().enumerate() {
            let ok = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && o.bytes().all(|b| b.is_ascii_graphic()));
            if !ok {
                return Err(err(
                    &format!("allowed_origins[{i}]"),
                    format!(
                        "{o:?} is not an origin like \"https://host:port\" (no path, no trailing /) or \"*\""
                    ),
                ));
            }
        }
        if !(100..=3_600_000).contains(&self.ready_max_age_ms) {
            return Err(err(
                "ready_max_age_ms",
                format!("{} is not in 100..=3600000", self.ready_max_age_ms),
            ));
        }
        for (i, s) in self.status_instruments.iter().enumerate() {
            if let Err(e) = super::pattern::check_exact(s) {
                return Err(err(&format!("status_instruments[{i}]"), e));
            }
        }
        if !(1..=100_000).contains(&self.idle_sleep_us) {
            return Err(err(
                "idle_sleep_us",
                format!("{} is not in 1..=100000", self.idle_sleep_us),
            ));
        }
        if self.drain_ms > 600_000 {
            return Err(err(
                "drain_ms",
                format!("{} is above 600000", self.drain_ms),
            ));
        }
        Ok(GatewaySettings {
            file: path.to_owned(),
            listen,
            rings,
            ring_dirs,
            tokens,
            tokens_path,
            client_queue: self.client_queue,
            max_clients: self.max_clients,
            max_request_bytes: self.max_request_bytes,
            allowed_origins: self.allowed_origins,
            ready_max_age: Duration::from_millis(self.ready_max_age_ms),
            status_instruments: self.status_instruments,
            idle_sleep: Duration::from_micros(self.idle_sleep_us),
            drain: Duration::from_millis(self.drain_ms),
        })
    }
}

/// Reads a tokens file: one token per line; blank lines and lines starting
/// with `#` are skipped. Returns the SHA-256 of each token (the gateway
/// never keeps the tokens themselves). The error says what is wrong and on
/// which line, never the token.
pub fn load_tokens(path: &Path) -> Result<Vec<[u8; 32]>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read tokens file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{}:{}: a token must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces",
                path.display(),
                i + 1
            ));
        }
        out.push(sha256(t.as_bytes()));
    }
    if out.is_empty() {
        return Err(format!("tokens file {} holds no token", path.display()));
    }
    Ok(out)
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ::ring::digest::digest(&::ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl GatewaySettings {
    /// One line saying what the config resolves to (for `tickring validate`).
    pub fn summary(&self) -> String {
        let mut s = format!("{}: ok: gateway on {}", self.file.display(), self.listen);
        let names: Vec<&str> = self.rings.iter().map(|r| r.name.as_str()).collect();
        if !names.is_empty() {
            let _ = write!(s, ", rings [{}]", names.join(", "));
        }
        if !self.ring_dirs.is_empty() {
            let dirs: Vec<String> = self
                .ring_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            let _ = write!(s, ", rings discovered in {}", dirs.join(" and "));
        }
        match &self.tokens {
            Some(t) => {
                let _ = write!(s, ", {} token(s)", t.len());
            }
            None => s.push_str(", no auth"),
        }
        let _ = write!(
            s,
            ", max {} clients, queue {} messages",
            self.max_clients, self.client_queue
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewaySettings, ConfigError> {
        GatewayFile::parse(Path::new("/etc/tickring/gateway.toml"), text)
    }

    fn refused(text: &str) -> String {
        parse(text).expect_err("refused").to_string()
    }

    #[test]
    fn good_config_resolves_defaults() {
        let s = parse(
            r#"
[gateway]
rings = ["coinbase", "/dev/shm/tickring/kraken.ring"]
"#,
        )
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            s.rings,
            vec![
                RingSource {
                    name: "coinbase".into(),
                    arg: "coinbase".into()
                },
                RingSource {
                    name: "kraken".into(),
                    arg: "/dev/shm/tickring/kraken.ring".into()
                }
            ]
        );
        assert!(s.tokens.is_none());
        assert_eq!(s.client_queue, 4096);
        assert_eq!(s.ready_max_age, Duration::from_secs(5));
    }

    #[test]
    fn each_bad_value_is_refused_naming_file_and_key() {
        let cases = [
            (
                "[gateway]\nrings=[\"a\"]\nlisten=\"nope\"",
                "`gateway.listen`",
            ),
            ("[gateway]\n", "`gateway.rings`: no rings"),
            ("[gateway]\nrings=[\"a b\"]", "`gateway.rings[0]`"),
            ("[gateway]\nrings=[\"a\", \"a\"]", "listed twice"),
            (
                "[gateway]\nrings=[\"/x/y.txt\"]",
                "not a path ending in .ring",
            ),
            ("[gateway]\nring_dir=\"rel\"", "`gateway.ring_dir`"),
            (
                "[gateway]\nring_dir=[]",
                "`gateway.ring_dir`: an empty list",
            ),
            (
                "[gateway]\nring_dir=[\"/a\", \"/a\"]",
                "`gateway.ring_dir`: /a is listed twice",
            ),
            (
                "[gateway]\nring_dir=[\"/a\", \"b\"]",
                "b is not an absolute path",
            ),
            (
                "[gateway]\nrings=[\"a\"]\nclient_queue=0",
                "`gateway.client_queue`",
            ),
            (
                "[gateway]\nrings=[\"a\"]\nmax_clients=0",
                "`gateway.max_clients`",
            ),
            (
                "[gateway]\nrings=[\"a\"]\nmax_request_bytes=1",
                "`gateway.max_request_bytes`",
            ),
            (
                "[gateway]\nrings=[\"a\"]\nallowed_origins=[\"example.com\"]",
                "`gateway.allowed_origins[0]`",
            ),
            (
                "[gateway]\nrings=[\"a\"]\nready_max_age_ms=1",
                "`gateway.ready_max_age_ms`",
            ),
            (
                "[gateway]\nrings=[\"a\"]\nstatus_instruments=[\"BTC\"]",
                "`gateway.status_instruments[0]`",
            ),
            (
                "[gateway]\nrings=[\"a\"]\ntokens_file=\"/nonexistent/tokens\"",
                "`gateway.tokens_file`: cannot read tokens file",
            ),
            ("[gateway]\nrings=[\"a\"]\nbogus=1", "`gateway.bogus`"),
            ("[gateway]\nrings=\"a\"", "`gateway.rings`"),
        ];
        for (text, want) in cases {
            let e = refused(text);
            assert!(
                e.starts_with("/etc/tickring/gateway.toml: ") && e.contains(want),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn tokens_file_is_checked_without_revealing_tokens() {
        let dir = std::env::temp_dir().join(format!("tickring-gw-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tokens");
        std::fs::write(&f, "# ops\n\nabcdefghijklmnop0123\n").unwrap();
        let t = load_tokens(&f).unwrap();
        assert_eq!(t, vec![sha256(b"abcdefghijklmnop0123")]);
        std::fs::write(&f, "abcdefghijklmnop0123\nshort-secret\n").unwrap();
        let e = load_tokens(&f).unwrap_err();
        assert!(e.contains(":2: a token must be"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(load_tokens(&f).unwrap_err().contains("holds no token"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gateway_configs_are_told_from_feed_configs() {
        assert!(GatewayFile::is_gateway_config("[gateway]\nrings=[]"));
        assert!(!GatewayFile::is_gateway_config(
            "exchange = \"kraken\"\n[ring]\nname=\"k\""
        ));
        assert!(!GatewayFile::is_gateway_config("not toml ["));
    }
}
