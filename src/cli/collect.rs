//! `tickring collect --config F`: run one feed's collector.

use std::path::PathBuf;

use clap::Args;

use crate::collector::{self, RunOptions};
use crate::config::FeedFileConfig;

#[derive(Args, Debug)]
pub struct CollectArgs {
    /// Feed config, e.g. /etc/tickring/feeds/kraken.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Print `metrics http://ADDR` on stdout once the metrics endpoint
    /// listens (for scripts that pass port 0).
    #[arg(long)]
    pub announce: bool,
}

pub fn run(args: &CollectArgs) -> anyhow::Result<()> {
    crate::cli::init_logging();
    // A bad config is refused before anything starts.
    let settings = FeedFileConfig::load(&args.config)?;
    collector::run(
        settings,
        RunOptions {
            announce: args.announce,
        },
    )
}
