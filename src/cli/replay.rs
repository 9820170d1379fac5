//! `tickring replay`: run an exchange simulator serving capture files until
//! SIGINT or SIGTERM (exit 0).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use nix::sys::signal::{SigSet, Signal};

use crate::event::Exchange;
use crate::replay::{Faults, Pace, ReplayConfig, ReplayServer, TlsFiles};

#[derive(Args, Debug)]
#[command(
    about = "Exchange simulator: serves capture files over the exchange's WebSocket protocol"
)]
pub struct ReplayArgs {
    /// coinbase | coinbase-advanced | kraken | binance
    #[arg(long, value_parser = parse_exchange)]
    pub exchange: Exchange,
    /// Capture file (JSON lines as recorded); repeat to merge several by
    /// exchange timestamp.
    #[arg(long = "file", required = true)]
    pub files: Vec<PathBuf>,
    /// Address to listen on (port 0: a free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// recorded | max | <messages per second>
    #[arg(long, default_value = "recorded")]
    pub pace: Pace,
    /// Start again at the end of the capture (see `tickring::replay` docs for
    /// what a lap boundary looks like to a client).
    #[arg(long = "loop")]
    pub looping: bool,
    /// TLS certificate chain (PEM); with --tls-key serves wss:// and https://.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Binance REST depth snapshots (one `GET /api/v3/depth` answer per line).
    #[arg(long, requires = "snapshot_symbols")]
    pub snapshot: Option<PathBuf>,
    /// The symbol of each --snapshot line, in order (e.g. NKNUSDT,BLZETH).
    #[arg(long, value_delimiter = ',', requires = "snapshot")]
    pub snapshot_symbols: Vec<String>,
    /// Fault: drop the Nth market message of each connection.
    #[arg(long, value_name = "N")]
    pub drop_nth: Option<u64>,
    /// Fault: corrupt the Nth (Kraken: checksum fails; Binance depth and
    /// Coinbase Advanced: sequence gap; else a negative price/size).
    #[arg(long, value_name = "N")]
    pub corrupt_nth: Option<u64>,
    /// Fault: close the connection (Close 1000) after N market messages.
    #[arg(long, value_name = "N")]
    pub close_after: Option<u64>,
    /// Fault: after N market messages send nothing (no heartbeats, pings,
    /// pongs) but keep the socket open.
    #[arg(long, value_name = "N")]
    pub silent_after: Option<u64>,
    /// Fault: send an oversized frame (--oversize-bytes) as message N.
    #[arg(long, value_name = "N")]
    pub oversize_nth: Option<u64>,
    /// Size of the oversized frame in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub oversize_bytes: usize,
    /// Fault: send message N as a text frame with invalid UTF-8.
    #[arg(long, value_name = "N")]
    pub invalid_utf8_nth: Option<u64>,
    /// Fault: send message N cut in half (broken JSON).
    #[arg(long, value_name = "N")]
    pub broken_json_nth: Option<u64>,
    /// Heartbeat period (Kraken, Coinbase) in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// Binance server ping period in seconds (0: none).
    #[arg(long, default_value_t = 20)]
    pub ping_interval_secs: u64,
    /// Binance: close a connection whose pong is this many seconds late.
    #[arg(long, default_value_t = 60)]
    pub pong_timeout_secs: u64,
    /// Print each connection's counters (JSON lines on stderr) when stopping.
    #[arg(long)]
    pub stats: bool,
}

fn parse_exchange(s: &str) -> Result<Exchange, String> {
    Exchange::from_name(s).ok_or_else(|| {
        format!("unknown exchange `{s}`: expected coinbase, coinbase-advanced, kraken or binance")
    })
}

impl ReplayArgs {
    pub fn config(&self) -> anyhow::Result<ReplayConfig> {
        let mut c = ReplayConfig::new(self.exchange, self.files.clone(), self.listen);
        c.pace = self.pace;
        c.looping = self.looping;
        c.tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        if self.snapshot.is_some() && self.exchange != Exchange::Binance {
            bail!(
                "--snapshot serves Binance REST depth snapshots; the exchange is {}",
                self.exchange
            );
        }
        c.snapshot = self.snapshot.clone();
        c.snapshot_symbols = self.snapshot_symbols.clone();
        c.faults = Faults {
            drop_nth: self.drop_nth,
            corrupt_nth: self.corrupt_nth,
            close_after: self.close_after,
            silent_after: self.silent_after,
            oversize_nth: self.oversize_nth,
            oversize_bytes: self.oversize_bytes,
            invalid_utf8_nth: self.invalid_utf8_nth,
            broken_json_nth: self.broken_json_nth,
        };
        if self.heartbeat_ms == 0 {
            bail!("--heartbeat-ms must be > 0");
        }
        c.heartbeat_interval = Duration::from_millis(self.heartbeat_ms);
        c.ping_interval = (self.exchange == Exchange::Binance && self.ping_interval_secs > 0)
            .then(|| Duration::from_secs(self.ping_interval_secs));
        c.pong_timeout = Duration::from_secs(self.pong_timeout_secs.max(1));
        Ok(c)
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    // Block SIGINT/SIGTERM before the server thread exists, so it inherits
    // the mask and the signals wait for `sigwait` below.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("blocking SIGINT/SIGTERM")?;
    let server = ReplayServer::start(config).context("starting the replay server")?;
    let cap = server.capture();
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "tickring replay: listening on {} ({}, {} market messages of {} symbols from {} file(s), {} recorded control lines not served)",
            server.url(),
            args.exchange,
            cap.msgs.len(),
            cap.symbols.len(),
            args.files.len(),
            cap.control_lines
        )?;
        out.flush()?;
    }
    let sig = signals.wait().context("waiting for SIGINT/SIGTERM")?;
    let conns = server.connections();
    server.stop();
    if args.stats {
        for c in &conns {
            eprintln!(
                r#"{{"conn":{},"peer":"{}","path":{},"market_messages":{},"market_bytes":{},"control_messages":{},"bytes":{},"dropped":{},"faults_injected":{},"client_messages":{},"client_errors":{},"pings_sent":{},"pongs_received":{},"laps":{}}}"#,
                c.id,
                c.peer,
                serde_json::to_string(&c.path)?,
                c.market_messages,
                c.market_bytes,
                c.control_messages,
                c.bytes,
                c.dropped,
                c.faults_injected,
                c.client_messages,
                c.client_errors,
                c.pings_sent,
                c.pongs_received,
                c.laps
            );
        }
    }
    eprintln!(
        "tickring replay: {sig:?}, stopped after {} connection(s)",
        conns.len()
    );
    Ok(ExitCode::SUCCESS)
}
