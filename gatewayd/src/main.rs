//! The `gatewayd` binary: parses the command line, loads the config and runs the daemon.

use std::process::ExitCode;

use clap::Parser;
use gatewayd::cli::{Cli, Command};
use gatewayd::config::Config;

mod poc_cli;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    gatewayd::logging::init(cli.log_level.unwrap_or(log::LevelFilter::Info));
    let command = cli.command.unwrap_or(Command::Run);
    let command = match command {
        Command::Status { json } => return status(&cli.config, json),
        Command::Keys { command } => return poc_cli::keys(&cli.config, command),
        Command::Poc { command } => return poc_cli::poc(command),
        other => other,
    };
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatewayd: {e}");
            return ExitCode::from(1);
        }
    };
    match command {
        Command::CheckConfig => {
            println!("{}: configuration is valid", cli.config.display());
            ExitCode::SUCCESS
        }
        Command::Status { .. } | Command::Keys { .. } | Command::Poc { .. } | Command::Run => {
            gatewayd::logging::set_level(cli.log_level.unwrap_or(config.log_level));
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // The crate's error messages already name their cause; `{e:#}` would
                    // repeat every `#[source]` after it.
                    log::error!("{e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `gatewayd status`: the socket comes from the config when it loads, else the default.
fn status(config: &std::path::Path, json: bool) -> ExitCode {
    let socket = match Config::load(config) {
        Ok(c) => c.service.status_socket_path(),
        Err(_) => gatewayd::service::status::default_socket_path(),
    };
    match gatewayd::service::status::query(&socket) {
        Ok(s) if json => {
            println!("{}", gatewayd::service::status::render_json(&s));
            ExitCode::SUCCESS
        }
        Ok(s) => {
            print!("{}", gatewayd::service::status::render(&s));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatewayd status: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(gatewayd::daemon::run_until_signal(config))?;
    Ok(())
}

/// glibc gives each thread that allocates its own malloc arena; freed memory then sits in
/// several of them. One arena keeps the daemon's resident memory down (about 1 MB measured
/// under load, see BENCHMARKS.md) at no measurable throughput cost for its few threads.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
