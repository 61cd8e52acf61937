//! `gatewayd keys …` and `gatewayd poc verify` in the binary: arguments → `gatewayd::poc::commands`.

use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use gatewayd::cli::{KeysCommand, PocCommand};
use gatewayd::config::Config;
use gatewayd::poc::commands::{self, Input};
use gatewayd::poc::verify::Policy;

fn now_ms() -> u64 {
    drivers::time::unix_ms(SystemTime::now())
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("gatewayd {what}: {e}");
    ExitCode::from(1)
}

/// The state dir from the config when it loads, else the default one.
fn state_dir(config: &Path) -> std::path::PathBuf {
    Config::load(config)
        .map(|c| c.gateway.state_dir)
        .unwrap_or_else(|_| "/var/lib/gatewayd".into())
}

pub fn keys(config: &Path, command: KeysCommand) -> ExitCode {
    let mut out = std::io::stdout();
    match command {
        KeysCommand::Show { key } => {
            let path = commands::key_path(key.as_deref(), &state_dir(config));
            match commands::show(&path, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail("keys show", e),
            }
        }
        KeysCommand::Generate { out: file } => match commands::generate(&file, &mut out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("keys generate", e),
        },
        KeysCommand::Onboard { owner, key } => {
            let path = commands::key_path(key.as_deref(), &state_dir(config));
            match commands::onboard(&path, &owner, now_ms()) {
                Ok(hex) => {
                    println!("{hex}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail("keys onboard", e),
            }
        }
    }
}

pub fn poc(command: PocCommand) -> ExitCode {
    let PocCommand::Verify {
        files,
        entropy,
        require_entropy,
        min_window_secs,
        uplinks,
        at_ms,
        json,
    } = command;
    let mut received = commands::ReceivedUplinks::default();
    for f in &uplinks {
        let name = f.display().to_string();
        let parsed = std::fs::File::open(f)
            .map_err(|e| format!("{name}: {e}"))
            .and_then(|file| {
                commands::parse_uplinks(&name, &mut BufReader::new(file), &mut received)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = parsed {
            return fail("poc verify", e);
        }
    }
    let received = (!uplinks.is_empty()).then_some(&received);
    let mut inputs = Vec::new();
    let stdin = files.is_empty() || files.iter().any(|f| f.as_os_str() == "-");
    for f in files.iter().filter(|f| f.as_os_str() != "-") {
        match std::fs::File::open(f) {
            Ok(file) => inputs.push(Input {
                name: f.display().to_string(),
                reader: Box::new(BufReader::new(file)),
            }),
            Err(e) => return fail("poc verify", format!("{}: {e}", f.display())),
        }
    }
    if stdin {
        inputs.push(Input {
            name: "-".into(),
            reader: Box::new(BufReader::new(std::io::stdin())),
        });
    }
    let policy = Policy {
        require_entropy,
        min_window_s: min_window_secs,
        ..Policy::default()
    };
    let at = at_ms.unwrap_or_else(now_ms);
    match commands::verify(
        inputs,
        &entropy,
        received,
        policy,
        at,
        if json {
            commands::Format::Json
        } else {
            commands::Format::Text
        },
        &mut std::io::stdout(),
    ) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => fail("poc verify", e),
    }
}
