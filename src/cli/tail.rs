//! `tickring tail RING`: print events as they arrive.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::render;
use crate::ring::{find_ring, GoneReason, Poll, Reader, ReaderOptions, StartAt};

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Ring name (looked up in /dev/hugepages/tickring then /dev/shm/tickring) or path to a ring file.
    pub ring: String,
    /// Where to start: the oldest event the ring holds, or only new events.
    #[arg(long, value_enum, default_value_t = From::Oldest)]
    pub from: From,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit (status 0) once the writer is gone instead of waiting for a new one.
    #[arg(long)]
    pub exit_when_gone: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum From {
    Oldest,
    Newest,
}

pub fn run(args: &TailArgs) -> anyhow::Result<()> {
    let path = find_ring(&args.ring)?;
    let opts = ReaderOptions {
        start: match args.from {
            From::Oldest => StartAt::Oldest,
            From::Newest => StartAt::Newest,
        },
        ..ReaderOptions::default()
    };
    let mut reader = Reader::open(&path, &opts)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut line = String::with_capacity(256);
    let mut seen = 0u64;
    let mut idle = 0u32;
    loop {
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
        line.clear();
        match reader.poll() {
            Poll::Event(ev) => {
                idle = 0;
                seen += 1;
                let inst = reader.instrument(ev.instrument).cloned();
                if args.json {
                    render::write_event_json(&mut line, &ev, inst.as_ref());
                } else {
                    render::write_event_line(&mut line, &ev, inst.as_ref());
                }
            }
            Poll::Overrun { lost } => {
                if args.json {
                    line.push_str(&format!("{{\"kind\":\"overrun\",\"lost\":{lost}}}"));
                } else {
                    line.push_str(&format!(
                        "# overrun: {lost} events lost (reader fell behind)"
                    ));
                }
            }
            Poll::WriterRestarted { epoch } => {
                if args.json {
                    line.push_str(&format!(
                        "{{\"kind\":\"writer_restarted\",\"epoch\":{epoch}}}"
                    ));
                } else {
                    line.push_str(&format!("# writer restarted: epoch {epoch}"));
                }
            }
            Poll::WriterGone(reason) => {
                let why = match reason {
                    GoneReason::Stopped => "stopped".to_owned(),
                    GoneReason::Died { pid } => format!("died (pid {pid})"),
                    GoneReason::Retired => "retired (file replaced)".to_owned(),
                };
                if args.json {
                    line.push_str(&format!(
                        "{{\"kind\":\"writer_gone\",\"reason\":\"{why}\"}}"
                    ));
                } else {
                    line.push_str(&format!("# writer gone: {why}"));
                }
                writeln!(out, "{line}").context("writing to stdout")?;
                if args.exit_when_gone {
                    break;
                }
                continue;
            }
            Poll::Empty => {
                // Spin briefly for latency, then back off to sleeping so an
                // idle tail costs nothing; flush what we have before sleeping.
                idle = idle.saturating_add(1);
                if idle == 64 {
                    out.flush().context("writing to stdout")?;
                }
                if idle > 64 {
                    std::thread::sleep(Duration::from_millis(1));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
        }
        writeln!(out, "{line}").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}
