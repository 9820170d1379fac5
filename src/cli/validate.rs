//! `tickring validate --config F`: check a config and exit (systemd's
//! `ExecStartPre=`). Prints what the config resolves to, or the file, key
//! and problem, and exits non-zero.

use std::path::PathBuf;

use clap::Args;

use crate::config::FeedFileConfig;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The config file to check.
    #[arg(long)]
    pub config: PathBuf,
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<()> {
    // A gateway config has a top-level [gateway] table; anything else is a feed config.
    let text = std::fs::read_to_string(&args.config).unwrap_or_default();
    if crate::gateway::GatewayFile::is_gateway_config(&text) {
        println!(
            "{}",
            crate::gateway::GatewayFile::load(&args.config)?.summary()
        );
        return Ok(());
    }
    let s = FeedFileConfig::load(&args.config)?;
    let symbols: Vec<_> = s.instruments.iter().map(|i| i.symbol.as_str()).collect();
    println!(
        "{}: ok: {} feed, {} symbol(s) [{}], ring {:?} ({} slots), endpoint {}",
        args.config.display(),
        s.exchange,
        symbols.len(),
        symbols.join(", "),
        s.ring_name,
        s.ring_capacity,
        s.endpoint
    );
    Ok(())
}
