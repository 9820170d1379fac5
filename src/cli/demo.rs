//! `tickring demo`: the whole pipeline on one machine with no exchange
//! access. Replay servers serve the bundled real captures of Coinbase,
//! Kraken and Binance over their own WebSocket protocols; one collector
//! process per exchange turns them into rings; the demo prints where to
//! look and a live summary, and cleans up everything on exit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use crate::event::Exchange;
use crate::replay::{Pace, ReplayConfig, ReplayServer};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Where the captures are (default: $TICKRING_SAMPLES,
    /// /usr/share/tickring/samples, or ../shared/fixtures of the source tree).
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Market messages per second each replay server sends.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Directory for the demo's rings (default /dev/shm/tickring-demo-<uid>).
    #[arg(long)]
    pub ring_dir: Option<PathBuf>,
    /// Seconds between the live summary lines (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub summary_every: f64,
    /// Address of the gateway (status page, WebSocket stream, REST, /metrics).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// One feed of the demo.
struct Feed {
    exchange: Exchange,
    ring: &'static str,
    symbols: Vec<&'static str>,
    files: Vec<&'static str>,
    snapshot: Option<(&'static str, Vec<&'static str>)>,
    path: &'static str,
}

fn feeds() -> Vec<Feed> {
    vec![
        Feed {
            exchange: Exchange::Coinbase,
            ring: "demo-coinbase",
            symbols: vec![
                "BAND-BTC", "BAND-GBP", "CRV-EUR", "DASH-BTC", "NMR-EUR", "NU-GBP", "SKL-BTC",
                "SKL-GBP", "SKL-USD", "YFI-BTC",
            ],
            files: vec![
                "coinbase/exchange_level2.jsonl",
                "coinbase/exchange_matches.jsonl",
            ],
            snapshot: None,
            path: "/",
        },
        Feed {
            exchange: Exchange::Kraken,
            ring: "demo-kraken",
            symbols: vec!["BTC/USD"],
            files: vec!["kraken/v2_session_book_d10.jsonl"],
            snapshot: None,
            path: "/v2",
        },
        Feed {
            exchange: Exchange::Binance,
            ring: "demo-binance",
            symbols: vec!["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"],
            files: vec!["binance/combined_depth_100ms.jsonl"],
            snapshot: Some((
                "binance/depth_snapshot_rest.jsonl",
                vec!["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"],
            )),
            path: "/stream",
        },
    ]
}

/// Finds the sample captures.
fn samples_dir(arg: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(a) = arg {
        candidates.push(a.clone());
    }
    if let Some(e) = std::env::var_os("TICKRING_SAMPLES") {
        candidates.push(e.into());
    }
    candidates.push("/usr/share/tickring/samples".into());
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    candidates.push("../shared/fixtures".into());
    for c in &candidates {
        if c.join("kraken/v2_session_book_d10.jsonl").is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "no sample captures found (looked in {}); pass --samples DIR",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A collector child process, terminated and reaped on drop.
struct Collector {
    name: &'static str,
    child: Child,
    metrics: SocketAddr,
}

impl Drop for Collector {
    fn drop(&mut self) {
        crate::process::terminate(&mut self.child, Duration::from_secs(3));
    }
}

/// Removes the demo's ring directory on drop.
struct RingDir(PathBuf);

impl Drop for RingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    install_signals()?;
    let samples = samples_dir(&args.samples)?;
    let uid = nix::unistd::getuid();
    let ring_dir = args
        .ring_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/dev/shm/tickring-demo-{uid}")));
    std::fs::create_dir_all(&ring_dir)
        .with_context(|| format!("creating {}", ring_dir.display()))?;
    let _ring_guard = RingDir(ring_dir.clone());
    let conf_dir = tempdir()?;
    let _conf_guard = RingDir(conf_dir.clone());
    let exe = std::env::current_exe().context("locating the tickring binary")?;

    println!("tickring demo: captures from {}", samples.display());
    let mut servers = Vec::new();
    let mut collectors = Vec::new();
    for f in feeds() {
        let mut rc = ReplayConfig::new(
            f.exchange,
            f.files.iter().map(|p| samples.join(p)).collect(),
            "127.0.0.1:0".parse().unwrap(),
        );
        rc.pace = Pace::PerSecond(args.rate.max(1));
        rc.looping = true;
        let mut rest = None;
        if let Some((snap, syms)) = &f.snapshot {
            rc.snapshot = Some(samples.join(snap));
            rc.snapshot_symbols = syms.iter().map(|s| s.to_string()).collect();
        }
        let server = ReplayServer::start(rc)
            .with_context(|| format!("starting the {} replay server", f.exchange))?;
        let addr = server.local_addr();
        if f.snapshot.is_some() {
            rest = Some(format!("http://{addr}"));
        }
        let cfg = conf_dir.join(format!("{}.toml", f.ring));
        write_config(
            &cfg,
            &f,
            &format!("ws://{addr}{}", f.path),
            rest.as_deref(),
            &ring_dir,
        )?;
        let child = Command::new(&exe)
            .args(["collect", "--announce", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {} collector", f.exchange))?;
        let mut c = Collector {
            name: f.ring,
            child,
            metrics: "127.0.0.1:0".parse().unwrap(),
        };
        c.metrics = wait_announce(&mut c, f.ring)?;
        forward_logs(&mut c);
        println!(
            "  {:<9} replay ws://{addr}{:<8} -> collector pid {:<7} -> ring {}/{}.ring  (metrics http://{}/metrics)",
            f.exchange.name(),
            f.path,
            c.child.id(),
            ring_dir.display(),
            f.ring,
            c.metrics
        );
        servers.push(server);
        collectors.push(c);
    }
    // The gateway serves every ring of the demo directory.
    let gw_cfg = conf_dir.join("gateway.toml");
    std::fs::write(
        &gw_cfg,
        format!(
            "# written by tickring demo\n[gateway]\nlisten = \"{}\"\nring_dir = \"{}\"\n",
            args.listen,
            ring_dir.display()
        ),
    )
    .with_context(|| format!("writing {}", gw_cfg.display()))?;
    let child = Command::new(&exe)
        .args(["gateway", "--config"])
        .arg(&gw_cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the gateway")?;
    let mut gateway = Collector {
        name: "gateway",
        child,
        metrics: args.listen,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_status(args.listen, "/health") != Some(200) {
        if let Ok(Some(st)) = gateway.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = gateway.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!(
                "the gateway exited ({st}) (is {} in use? pass --listen):\n{err}",
                args.listen
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the gateway did not answer /health on {} within 15 s",
                args.listen
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    forward_logs(&mut gateway);
    println!(
        "  gateway   pid {:<7} status page http://{}/   stream ws://{}/v1/stream   metrics http://{}/metrics",
        gateway.child.id(),
        args.listen,
        args.listen,
        args.listen
    );
    println!();
    println!("Look at it:");
    println!("  open http://{}/ (live status page)", args.listen);
    println!("  tickring tail {}/demo-kraken.ring", ring_dir.display());
    println!(
        "  tickring tail {}/demo-binance.ring --json",
        ring_dir.display()
    );
    println!("  tickring stat {}/demo-coinbase.ring", ring_dir.display());
    println!("  curl http://{}/ready", collectors[0].metrics);
    match args.duration {
        Some(d) => {
            println!("Running for {d} s (Ctrl-C stops earlier); everything is removed on exit.")
        }
        None => println!("Running until Ctrl-C; everything is removed on exit."),
    }
    std::io::stdout().flush().ok();

    let start = Instant::now();
    let mut last_summary = Instant::now();
    let every = Duration::from_secs_f64(args.summary_every.max(0.0));
    let mut prev: Vec<u64> = vec![0; collectors.len()];
    loop {
        if STOP.load(Ordering::Relaxed) {
            println!("stopping (signal)");
            break;
        }
        if args
            .duration
            .is_some_and(|d| start.elapsed().as_secs_f64() >= d)
        {
            println!("stopping (--duration reached)");
            break;
        }
        for c in &mut collectors {
            if let Ok(Some(st)) = c.child.try_wait() {
                bail!(
                    "the {} collector exited ({st}); see its log lines above",
                    c.name
                );
            }
        }
        if !every.is_zero() && last_summary.elapsed() >= every {
            let secs = last_summary.elapsed().as_secs_f64();
            last_summary = Instant::now();
            if let Ok(Some(st)) = gateway.child.try_wait() {
                bail!("the gateway exited ({st}); see its log lines above");
            }
            let mut line = String::from("  ");
            for (i, c) in collectors.iter().enumerate() {
                let m = scrape(c.metrics).unwrap_or_default();
                let events = metric(&m, "tickring_collector_events_published_total");
                let valid = metric(&m, "tickring_collector_books_valid");
                let books = metric(&m, "tickring_collector_books");
                let ready = http_status(c.metrics, "/ready") == Some(200);
                line.push_str(&format!(
                    "{}: {:.0} ev/s, books {valid}/{books} valid{}   ",
                    c.name.trim_start_matches("demo-"),
                    (events.saturating_sub(prev[i])) as f64 / secs,
                    if ready { ", ready" } else { "" }
                ));
                prev[i] = events;
            }
            println!("{}", line.trim_end());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(gateway);
    drop(collectors);
    for s in servers {
        s.stop();
    }
    println!("demo stopped; rings and configs removed");
    Ok(())
}

fn install_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler is one atomic store (async-signal-safe).
        unsafe { sigaction(sig, &act) }.with_context(|| format!("installing the {sig} handler"))?;
    }
    Ok(())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("tickring-demo-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

fn write_config(
    path: &Path,
    f: &Feed,
    endpoint: &str,
    rest: Option<&str>,
    ring_dir: &Path,
) -> anyhow::Result<()> {
    let symbols = f
        .symbols
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let channels = match f.exchange {
        Exchange::Binance => "\"book\", \"trades\"",
        _ => "\"book\", \"trades\", \"heartbeat\"",
    };
    let mut text = format!(
        "# written by tickring demo\nexchange = \"{}\"\nsymbols = [{symbols}]\nchannels = [{channels}]\nendpoint = \"{endpoint}\"\n",
        f.exchange.name()
    );
    if let Some(r) = rest {
        text.push_str(&format!("rest_endpoint = \"{r}\"\n"));
    }
    text.push_str(&format!(
        "\n[ring]\nname = \"{}\"\ncapacity = 65536\nbacking = \"shm\"\ndir = \"{}\"\n\n[reconnect]\ninitial_ms = 200\nmax_ms = 5000\n\n[liveness]\nsilence_timeout_ms = 5000\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        f.ring,
        ring_dir.display()
    ));
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Reads the collector's stdout until it announces its metrics address.
fn wait_announce(c: &mut Collector, name: &str) -> anyhow::Result<SocketAddr> {
    let out = c.child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(a) = line.trim().strip_prefix("metrics http://") {
                let _ = tx.send(a.to_owned());
            }
            line.clear();
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(a) => a
            .parse()
            .with_context(|| format!("the {name} collector announced {a:?}")),
        Err(_) => {
            let mut err = String::new();
            if let Some(mut e) = c.child.stderr.take() {
                let _ = c.child.kill();
                let _ = e.read_to_string(&mut err);
            }
            bail!("the {name} collector did not start:\n{err}")
        }
    }
}

/// Forwards a collector's warnings and errors (its log is on stderr) with a prefix.
fn forward_logs(c: &mut Collector) {
    let Some(err) = c.child.stderr.take() else {
        return;
    };
    let name = c.name;
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                eprintln!("[{name}] {line}");
            }
        }
    });
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).map(|(s, _)| s)
}

fn scrape(addr: SocketAddr) -> Option<String> {
    http_get(addr, "/metrics").map(|(_, b)| b)
}

/// The value of an unlabelled-by-us metric (the first sample with that name).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b'{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}
