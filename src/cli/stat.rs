//! `tickring stat RING`: a ring's header, writer state and rate.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::ring::{find_ring, GoneReason, Reader, ReaderOptions, RingInfo};

#[derive(Args, Debug)]
pub struct StatArgs {
    /// Ring name or path to a ring file.
    pub ring: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &StatArgs) -> anyhow::Result<()> {
    let path = find_ring(&args.ring)?;
    let mut reader = Reader::open(&path, &ReaderOptions::default())?;
    // Events/s over the last second: the cursor counts every publish.
    let c0 = reader.cursor();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let info = reader.info();
    let rate = (info.cursor - c0) as f64 / t0.elapsed().as_secs_f64();
    let instruments: Vec<_> = reader
        .instruments()
        .iter()
        .enumerate()
        .map(|(id, i)| {
            json!({"id": id, "exchange": i.exchange.name(), "symbol": i.symbol,
                   "price_scale": i.price_scale, "qty_scale": i.qty_scale})
        })
        .collect();
    if args.json {
        println!("{}", to_json(&info, rate, instruments));
    } else {
        print_table(&info, rate, &instruments);
    }
    Ok(())
}

fn state_name(info: &RingInfo) -> String {
    match info.writer.gone {
        Some(GoneReason::Stopped) => "stopped".into(),
        Some(GoneReason::Died { .. }) => "dead".into(),
        Some(GoneReason::Retired) => "retired".into(),
        None if info.writer.state == 0 => "never opened".into(),
        None => "running".into(),
    }
}

fn to_json(info: &RingInfo, rate: f64, instruments: Vec<serde_json::Value>) -> serde_json::Value {
    let w = &info.writer;
    json!({
        "path": info.path,
        "version": info.version,
        "slot_size": info.slot_size,
        "capacity": info.capacity,
        "page_size": info.page_size,
        "huge_pages": info.page_size > 4096,
        "file_size": info.file_size,
        "created_ns": info.created_ns,
        "cursor": info.cursor,
        "events_per_s": rate.round() as u64,
        "writer": {
            "pid": w.pid,
            "epoch": w.epoch,
            "state": state_name(info),
            "alive": w.gone.is_none() && w.state != 0,
            "pid_alive": w.pid_alive,
            "heartbeat_ns": w.heartbeat_ns,
            "heartbeat_age_ns": w.heartbeat_age_ns,
            "opened_ns": w.opened_ns,
        },
        "instruments": instruments,
    })
}

fn print_table(info: &RingInfo, rate: f64, instruments: &[serde_json::Value]) {
    let w = &info.writer;
    println!("ring          {}", info.path.display());
    println!(
        "layout        version {}, {} B slots",
        info.version, info.slot_size
    );
    println!("capacity      {} events", info.capacity);
    println!(
        "pages         {} KiB{}",
        info.page_size / 1024,
        if info.page_size > 4096 {
            " (huge pages)"
        } else {
            " (no huge pages)"
        }
    );
    println!("file size     {} bytes", info.file_size);
    println!("cursor        {} events published", info.cursor);
    println!("rate          {rate:.0} events/s (last second)");
    println!(
        "writer        {} (pid {}, epoch {}, heartbeat {:.3} s ago)",
        state_name(info),
        w.pid,
        w.epoch,
        w.heartbeat_age_ns as f64 / 1e9
    );
    println!("instruments   {}", instruments.len());
    for i in instruments {
        println!(
            "  {:>4}  {:<18} {:<16} price scale {}, qty scale {}",
            i["id"],
            i["exchange"].as_str().unwrap_or(""),
            i["symbol"].as_str().unwrap_or(""),
            i["price_scale"],
            i["qty_scale"]
        );
    }
}
