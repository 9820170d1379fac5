//! WebSocket decode throughput: tickring's own framing (`net::ws::WsReader`)
//! against tungstenite's protocol layer over an in-memory stream, on the same
//! bytes, fed in the same chunk sizes.
//!
//! `cargo bench --bench ws` (add `-- decode` for only the codec groups).
//! The `loopback` group pushes frames from a tungstenite server thread on
//! 127.0.0.1 through the io_uring client and reports frames per second.

use std::io::{self, Read, Write};
use std::ops::ControlFlow;

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use tickring::net::ws::{encode_frame, OpCode, Role, WsEvent, WsReader};
use tickring::net::NetConfig;

/// A read-only in-memory stream that returns at most `chunk` bytes per read,
/// like a socket would; writes (tungstenite's pongs) are discarded.
struct MemStream<'a> {
    data: &'a [u8],
    pos: usize,
    chunk: usize,
}

impl Read for MemStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len() - self.pos);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for MemStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `count` unmasked text frames of `size` bytes of JSON-ish text.
fn stream(count: usize, size: usize) -> Vec<u8> {
    const PAT: &[u8] = b"{\"p\":\"123.45\",\"q\":\"0.5\"}";
    let body: Vec<u8> = (0..size).map(|i| PAT[i % PAT.len()]).collect();
    let mut s = Vec::new();
    for _ in 0..count {
        encode_frame(&mut s, OpCode::Text, true, &body, None);
    }
    s
}

fn own_decode(data: &[u8], chunk: usize) -> usize {
    let mut r = WsReader::new(Role::Client, 1 << 24, true);
    let mut n = 0usize;
    for c in data.chunks(chunk) {
        r.feed(c, |ev| {
            if let WsEvent::Message { payload, .. } = ev {
                n += black_box(payload).len();
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    }
    n
}

fn tungstenite_decode(data: &[u8], chunk: usize, count: usize) -> usize {
    let s = MemStream {
        data,
        pos: 0,
        chunk,
    };
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(s, tungstenite::protocol::Role::Client, None);
    let mut n = 0usize;
    for _ in 0..count {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => n += black_box(t.as_str()).len(),
            m => panic!("unexpected {m:?}"),
        }
    }
    n
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    // Typical market-data frames (~200 B trades, ~2 KiB book diffs, 64 KiB
    // snapshots), fed in 16 KiB chunks like TLS records or recv buffers.
    for (count, size) in [(10_000usize, 200usize), (2_000, 2_048), (64, 65_536)] {
        let data = stream(count, size);
        g.throughput(Throughput::Bytes(data.len() as u64));
        let id = format!("{size}B");
        assert_eq!(own_decode(&data, 16_384), count * size);
        assert_eq!(tungstenite_decode(&data, 16_384, count), count * size);
        g.bench_with_input(BenchmarkId::new("own", &id), &data, |b, d| {
            b.iter(|| own_decode(d, 16_384))
        });
        g.bench_with_input(BenchmarkId::new("tungstenite", &id), &data, |b, d| {
            b.iter(|| tungstenite_decode(d, 16_384, count))
        });
    }
    g.finish();
}

/// Frames per second through the io_uring client on plain ws:// over
/// 127.0.0.1. A server thread does the upgrade with tungstenite, then
/// writes pre-encoded 200-byte text frames in 64 KiB writes as fast as the
/// socket takes them; the client counts messages (touching each payload)
/// and the clock runs from `on_open` to the last message. Both processes
/// share this machine's two cores, so this is a floor, not a ceiling.
fn loopback(frames: usize, size: usize, cfg: NetConfig, label: &str) {
    use std::io::Write as _;
    use std::net::TcpListener;
    use tickring::net::{ConnId, ConnectOptions, Ctx, EventLoop, Handler, Message};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let data = stream(frames, size);
    let srv = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut ws = tungstenite::accept(tcp).unwrap();
        let s = ws.get_mut();
        for block in data.chunks(64 * 1024) {
            if s.write_all(block).is_err() {
                return;
            }
        }
        // Wait for the client to hang up.
        let _ = std::io::Read::read(s, &mut [0u8; 16]);
    });

    struct Count {
        want: usize,
        got: usize,
        bytes: usize,
        start: Option<std::time::Instant>,
        end: Option<std::time::Instant>,
    }
    impl Handler for Count {
        fn on_open(&mut self, _: &mut Ctx<'_>, _: ConnId) {
            self.start = Some(std::time::Instant::now());
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, m: Message<'_>) {
            self.got += 1;
            self.bytes += black_box(m.payload).len();
            if self.got == self.want {
                self.end = Some(std::time::Instant::now());
                ctx.close(conn, 1000, "done");
                ctx.stop();
            }
        }
        fn on_timer(&mut self, ctx: &mut Ctx<'_>, _: tickring::net::TimerId, _: u64) {
            ctx.stop();
        }
    }
    let mut ev = EventLoop::new(cfg).unwrap();
    let features = ev.features().to_string();
    {
        let mut ctx = ev.ctx();
        ctx.connect_ws(
            &format!("ws://127.0.0.1:{port}/"),
            ConnectOptions::default(),
        )
        .unwrap();
        ctx.set_timer(std::time::Duration::from_secs(60), 0);
    }
    let mut h = Count {
        want: frames,
        got: 0,
        bytes: 0,
        start: None,
        end: None,
    };
    ev.run(&mut h).unwrap();
    let stats = ev.stats().clone();
    drop(ev);
    let _ = srv.join();
    let (Some(a), Some(b)) = (h.start, h.end) else {
        println!(
            "loopback/{label}: incomplete ({} of {frames} frames)",
            h.got
        );
        return;
    };
    let secs = (b - a).as_secs_f64();
    println!(
        "loopback/{label}: {frames} frames of {size} B in {secs:.3} s = {:.2} M frames/s, {:.0} MB/s payload; {} recv completions ({:.1} frames each), recv submits {}, ENOBUFS {}\n  {features}",
        frames as f64 / secs / 1e6,
        h.bytes as f64 / secs / 1e6,
        stats.recvs,
        frames as f64 / stats.recvs.max(1) as f64,
        stats.recv_submits,
        stats.recv_no_buffers,
    );
}

fn loopback_all() {
    let frames = 1_000_000;
    loopback(frames, 200, NetConfig::default(), "multishot+bufring");
    loopback(
        frames,
        200,
        NetConfig {
            multishot_recv: false,
            ..NetConfig::default()
        },
        "bufring",
    );
    loopback(frames, 200, NetConfig::default().plain(), "plain");
    let sq = NetConfig {
        sqpoll: true,
        sqpoll_idle_ms: 10,
        ..NetConfig::default()
    };
    loopback(frames, 200, sq, "sqpoll+multishot+bufring");
}

criterion_group!(benches, decode);

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if filter.is_empty()
        || filter
            .iter()
            .any(|f| "decode".contains(f.as_str()) || f.starts_with("decode"))
    {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if filter.is_empty() || filter.iter().any(|f| f.starts_with("loopback")) {
        loopback_all();
    }
}
