//! The command line: subcommands and flags, with their help text. The man
//! page and shell completions are generated from these definitions.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::BackendKind;

/// Announce anycast or service prefixes over BGP only while the services
/// behind them are healthy.
#[derive(Debug, Parser)]
#[command(name = "anycastd", version, about, long_about = None)]
#[command(
    after_help = "Exit status: 0 success; 1 a service is down (check) or the backend's \
    peer went away (run); 2 configuration or usage error.\n\
    Signals (run): SIGHUP reloads the configuration; SIGTERM and SIGINT withdraw every \
    route and exit 0; a second SIGTERM/SIGINT exits at once."
)]
pub struct Cli {
    /// Configuration file, YAML (.yaml, .yml) or JSON (.json).
    #[arg(
        short = 'c',
        long,
        env = "CONFIG_PATH",
        default_value = "/config.yaml",
        global = true,
        value_name = "FILE"
    )]
    pub config: PathBuf,

    /// Log verbosity: trace, debug, info, warn (warning), error (fatal, panic).
    /// Logs go to stderr.
    #[arg(
        long,
        env = "LOG_LEVEL",
        default_value = "warn",
        global = true,
        value_name = "LEVEL",
        value_parser = parse_log_level
    )]
    pub log_level: tracing::Level,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Announce through this backend, overriding `announcer.backend`.
    #[arg(long, value_enum, global = true, value_name = "BACKEND")]
    pub backend: Option<BackendArg>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the daemon: check services and announce their routes (default).
    Run,
    /// Load and check the configuration, print a one-line summary.
    Validate,
    /// Run every check once and print the results; exit 1 if a service is down.
    Check,
    /// Empty the BIRD include file(s) and have BIRD reconfigure (for systemd's
    /// ExecStopPost after a crash); exit 1 if BIRD could not be updated.
    BirdFlush,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// anycastd's own BGP speaker.
    Native,
    /// ExaBGP's process API on stdin/stdout.
    Exabgp,
    /// A BIRD include file and BIRD's control socket.
    Bird,
}

impl From<BackendArg> for BackendKind {
    fn from(arg: BackendArg) -> BackendKind {
        match arg {
            BackendArg::Native => BackendKind::Native,
            BackendArg::Exabgp => BackendKind::Exabgp,
            BackendArg::Bird => BackendKind::Bird,
        }
    }
}

/// The original's logrus level names, any case; fatal and panic map to error.
pub fn parse_log_level(text: &str) -> Result<tracing::Level, String> {
    use tracing::Level;
    match text.to_ascii_lowercase().as_str() {
        "trace" => Ok(Level::TRACE),
        "debug" => Ok(Level::DEBUG),
        "info" => Ok(Level::INFO),
        "warn" | "warning" => Ok(Level::WARN),
        "error" | "fatal" | "panic" => Ok(Level::ERROR),
        _ => Err(format!(
            "unknown log level `{text}`: use trace, debug, info, warn, warning, error, fatal or panic"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn log_levels_accept_original_names() {
        assert_eq!(parse_log_level("WARNING"), Ok(tracing::Level::WARN));
        assert_eq!(parse_log_level("Panic"), Ok(tracing::Level::ERROR));
        assert!(parse_log_level("verbose").is_err());
    }
}
