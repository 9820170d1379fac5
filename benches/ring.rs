//! Criterion: the ring's publish and poll costs on one thread (no
//! cross-core traffic; `tickring bench ring` measures that).
//!
//! `cargo bench --bench ring`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickring::event::{Event, EventKind};
use tickring::ring::{Backing, Poll, Reader, ReaderOptions, StartAt, Writer, WriterOptions};

const CAPACITY: u64 = 1 << 16;

/// A ring in a private /dev/shm directory, removed on drop.
struct Ring {
    dir: PathBuf,
    writer: Writer,
}

impl Ring {
    fn new(tag: &str) -> Ring {
        let dir = PathBuf::from(format!(
            "/dev/shm/tickring-criterion-{}-{tag}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let writer = Writer::create(
            "bench",
            &WriterOptions {
                backing: Backing::Shm { dir: dir.clone() },
                capacity: CAPACITY,
                lock_memory: true,
            },
        )
        .unwrap();
        Ring { dir, writer }
    }

    fn reader(&self) -> Reader {
        Reader::open(
            self.writer.path(),
            &ReaderOptions {
                start: StartAt::Newest,
                ..ReaderOptions::default()
            },
        )
        .unwrap()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn trade(n: u64) -> Event {
    Event {
        kind: EventKind::Trade as u8,
        price: n as i64,
        qty: 1,
        seq: n,
        ..Event::default()
    }
}

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));

    let mut ring = Ring::new("publish");
    let mut n = 0u64;
    g.bench_function("publish", |b| {
        b.iter(|| {
            n += 1;
            ring.writer.publish(std::hint::black_box(&trade(n)))
        })
    });
    drop(ring);

    // Poll with an event waiting: publish half a lap, then time only the
    // polls that read it back.
    let mut ring = Ring::new("poll");
    let mut reader = ring.reader();
    g.bench_function("poll_event", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(CAPACITY / 2);
                for i in 0..chunk {
                    ring.writer.publish(&trade(i));
                }
                let t = Instant::now();
                for _ in 0..chunk {
                    match reader.poll() {
                        Poll::Event(e) => {
                            std::hint::black_box(e);
                        }
                        other => panic!("expected an event, got {other:?}"),
                    }
                }
                total += t.elapsed();
                left -= chunk;
            }
            total
        })
    });

    // Poll with nothing new (a reader that has caught up).
    g.bench_function("poll_empty", |b| {
        b.iter(|| std::hint::black_box(reader.poll()))
    });
    g.finish();
}

criterion_group!(benches, ring);
criterion_main!(benches);
