//! Config errors: what is wrong, in which file, at which line and key — and how a parse
//! error, a validation error or a non-UTF-8 file is located in the text.

use std::path::{Path, PathBuf};

use super::locate;

/// A config error: what is wrong, in which file, at which key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the config file: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error(
        "{file}:{line}:{column}: {}byte 0x{byte:02x} is not valid UTF-8; save the file as UTF-8",
        key_prefix(key)
    )]
    Encoding {
        /// The file.
        file: PathBuf,
        /// 1-based line of the first bad byte.
        line: usize,
        /// 1-based column (in bytes) of the first bad byte.
        column: usize,
        /// The first bad byte.
        byte: u8,
        /// The dotted key whose value holds it (empty in a comment or outside any value).
        key: String,
    },
    /// The file is not valid TOML or a value has the wrong type or an unknown key.
    #[error("{}: {}{message}", at_column(file, *line, *column), key_prefix(key))]
    Parse {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending text (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// The dotted key (empty for a syntax error outside any key).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value is well-formed but not acceptable (or a key it needs is missing).
    #[error("{}: key `{key}`: {message}", at_line(file, *line))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the key's value, or of the table that lacks the key (0: unknown,
        /// filled in by [`Config::from_toml`]).
        line: usize,
        /// The dotted key (`[i]` for an array element).
        key: String,
        /// What is wrong.
        message: String,
    },
}

pub(super) fn utf8(bytes: Vec<u8>, file: &Path) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let byte = e.as_bytes()[offset];
        let lossy = String::from_utf8_lossy(e.as_bytes());
        let (line, column) = locate::line_col(&lossy, offset);
        ConfigError::Encoding {
            file: file.to_path_buf(),
            line,
            column,
            byte,
            key: locate::key_at(&lossy, offset).unwrap_or_default(),
        }
    })
}

impl ConfigError {
    /// Fill in the line of a validation error from the key's place in `text`.
    pub(super) fn located(self, text: &str) -> ConfigError {
        match self {
            ConfigError::Invalid {
                file,
                line: 0,
                key,
                message,
            } => ConfigError::Invalid {
                line: locate::key_line(text, &key).unwrap_or(0),
                file,
                key,
                message,
            },
            other => other,
        }
    }
}

/// `file:line:column`, leaving out what is unknown (0).
fn at_column(file: &Path, line: usize, column: usize) -> String {
    match column {
        0 => at_line(file, line),
        c => format!("{}:{c}", at_line(file, line)),
    }
}

/// `file:line` (or `file` when the line is unknown).
fn at_line(file: &Path, line: usize) -> String {
    if line == 0 {
        file.display().to_string()
    } else {
        format!("{}:{line}", file.display())
    }
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}
