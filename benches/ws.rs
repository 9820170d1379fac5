//! WebSocket decode throughput: tickring's own framing (`net::ws::WsReader`)
//! against tungstenite's protocol layer over an in-memory stream, on the same
//! bytes, fed in the same chunk sizes.
//!
//! `cargo bench --bench ws` (add `-- decode` for only the codec groups).
//! The `loopback` group pushes frames from a tungstenite server thread on
//! 127.0.0.1 through the io_uring client and reports frames per second.

use std::io::{self, Read, Write};
use std::ops::ControlFlow;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tickring::net::ws::{encode_frame, OpCode, Role, WsEvent, WsReader};

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

criterion_group!(benches, decode);
criterion_main!(benches);
