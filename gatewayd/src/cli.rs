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
    /// The hotspot's Ed25519 identity (proof of coverage).
    Keys {
        /// What to do with the key.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Proof-of-coverage tools.
    Poc {
        /// What to do.
        #[command(subcommand)]
        command: PocCommand,
    },
}

/// `gatewayd keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the public key and the hotspot address (hex of the Ed25519 public key).
    Show {
        /// Key file (default: identity.pk8 in the config's state_dir).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Create a new key file with mode 0600; refuses to overwrite an existing file.
    Generate {
        /// Where to write the PKCS#8 key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a signed onboarding statement (hex) binding this key to an owner wallet.
    Onboard {
        /// The owner's wallet address.
        #[arg(long)]
        owner: String,
        /// Key file (default: identity.pk8 in the config's state_dir).
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

/// `gatewayd poc …`
#[derive(Debug, Subcommand)]
pub enum PocCommand {
    /// Verify reports, one hex or base64 report per line, from FILEs or stdin; prints a
    /// verdict per report; exit 0 when all are valid, 1 otherwise.
    Verify {
        /// Report files (none or `-`: stdin).
        files: Vec<PathBuf>,
        /// The network's entropy of a window, WINDOW_LEN_S:WINDOW_ID:HEX (repeatable).
        #[arg(long, value_parser = crate::poc::commands::parse_entropy)]
        entropy: Vec<(crate::poc::beacon::BeaconWindow, [u8; 32])>,
        /// Reject beacons whose window's entropy was not given.
        #[arg(long)]
        require_entropy: bool,
        /// Reject beacons from windows shorter than this, s (default: the production minimum
        /// 3600; a test network with shorter windows sets its own, at least 10).
        #[arg(long, default_value_t = crate::poc::verify::PRODUCTION_MIN_WINDOW_S,
              value_parser = clap::value_parser!(u32).range(10..))]
        min_window_secs: u32,
        /// The uplinks the network received, to check receipts against (repeatable): one
        /// per line, `[ADDRESS] UPLINK_ID PHY` — the hotspot address (64 hex digits;
        /// omitted: any receipt's hotspot), `rx_info.uplink_id` of the `event/up` message
        /// (decimal) and its PHYPayload (hex or base64); blank lines and `#` comments are
        /// skipped. Each receipt is checked against those in its uplink-id range.
        #[arg(long, value_name = "FILE")]
        uplinks: Vec<PathBuf>,
        /// Verify as if received at this Unix time in ms (default: now).
        #[arg(long)]
        at_ms: Option<u64>,
        /// Print one JSON object per verdict and line instead of text (schema in
        /// docs/proof-of-coverage.md §7.1).
        #[arg(long)]
        json: bool,
    },
}

/// `--log-level` is not a level.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not one of off, error, warn, info, debug, trace")]
pub struct LevelError(String);

fn parse_level(s: &str) -> Result<log::LevelFilter, LevelError> {
    s.parse().map_err(|_| LevelError(s.to_owned()))
}
