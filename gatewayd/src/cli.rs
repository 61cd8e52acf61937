//! Command-line interface: `gatewayd [--config FILE] [--log-level LEVEL] [COMMAND]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The LoRa hotspot daemon.
#[derive(Debug, Parser)]
#[command(name = "gatewayd", version, about)]
pub struct Cli {
    /// Config file.
    #[arg(short, long, global = true, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Log level (off, error, warn, info, debug, trace); overrides `[log] level`.
    #[arg(long, global = true, value_parser = parse_level)]
    pub log_level: Option<log::LevelFilter>,
    /// What to do; without a command the daemon runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the config file and exit: 0 when valid, 1 with the error otherwise.
    CheckConfig,
    /// Ask the running daemon how it is (over its status socket) and print it.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not one of off, error, warn, info, debug, trace"))
}
