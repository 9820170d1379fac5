//! `tickring doctor`: checks the host against what the configured
//! collectors need (huge pages, THP, governor, isolated cores, irqbalance,
//! memlock, io_uring, RT throttling, clocksource, NUMA, core sharing).
//! Exit 0 when nothing fails (warnings allowed), 1 when a check fails, 2 on
//! a usage or config error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::doctor::{self, Options, Report, Status};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print one JSON object: {"checks": [{name, status, seen, wanted, fix}], "summary": {...}}.
    #[arg(long)]
    pub json: bool,
    /// Directory holding feeds/*.toml [default: <root>/etc/tickring].
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Read /proc, /sys, /etc and /dev under DIR instead of / (a mounted image, a test tree).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

pub fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let opts = Options {
        config_dir: args
            .config_dir
            .clone()
            .unwrap_or_else(|| args.root.join("etc/tickring")),
        root: args.root.clone(),
    };
    let report = doctor::run(&opts)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        // Rendered first so that a closed stdout is an io::Error (a quiet
        // exit for `| head`), not a serde_json one.
        let text = serde_json::to_string_pretty(&report)?;
        writeln!(out, "{text}")?;
    } else {
        write_table(&mut out, &report)?;
    }
    out.flush()?;
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The human form: one line per check (status, name, seen), then what is
/// wanted and the fix, indented, for each check that is not a pass.
pub fn write_table(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for c in &report.checks {
        let mark = match c.status {
            Status::Pass => "pass",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        writeln!(out, "{mark}  {:<width$}  {}", c.name, c.seen)?;
        if matches!(c.status, Status::Warn | Status::Fail) {
            writeln!(out, "      {:<width$}  wanted: {}", "", c.wanted)?;
            if let Some(fix) = &c.fix {
                writeln!(out, "      {:<width$}  fix: {fix}", "")?;
            }
        }
    }
    let s = &report.summary;
    writeln!(
        out,
        "\n{} pass, {} warn, {} fail, {} skip",
        s.pass, s.warn, s.fail, s.skip
    )
}
