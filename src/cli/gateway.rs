//! `tickring gateway --config F`: the WebSocket/HTTP gateway service.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::gateway::{self, GatewayFile};

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// The gateway config (TOML with a [gateway] table).
    #[arg(long, default_value = "/etc/tickring/gateway.toml")]
    pub config: PathBuf,
}

pub fn run(args: &GatewayArgs) -> anyhow::Result<()> {
    // First, while the process has one thread: take the socket systemd
    // passed (this edits the environment).
    let passed = gateway::serve::take_activated()?;
    let settings = GatewayFile::load(&args.config)?;
    gateway::run(settings, passed).context("gateway")?;
    Ok(())
}
