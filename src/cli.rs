//! The command line: subcommands and flags, with their help text, and the
//! manual's other sections ([`MANUAL`]: exit status, signals, environment,
//! files). The man page `anycastd(8)` and the shell completions are
//! generated from these definitions by `anycastd generate` ([`generate`]).

pub mod generate;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::BackendKind;

/// Announce anycast or service prefixes over BGP only while the services
/// behind them are healthy.
#[derive(Debug, Parser)]
#[command(name = "anycastd", version, about, long_about = LONG_ABOUT)]
#[command(
    after_help = "Exit status: 0 success; 1 a service is down (check, status), the backend's \
    peer went away (run), BIRD could not be updated (bird-flush) or the daemon refused \
    (reload); 2 configuration or usage error, or the daemon cannot be reached.\n\
    Signals (run): SIGHUP reloads the configuration; SIGTERM and SIGINT withdraw every \
    route (after drain_time with announcer.graceful_shutdown) and exit 0; a second \
    SIGTERM/SIGINT exits at once.\n\
    More with --help, in anycastd(8) and anycastd.yaml(5).",
    after_long_help = generate::manual_text()
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

    /// Announce through this backend, overriding announcer.backend of the
    /// configuration file (which also decides the keys that are required).
    #[arg(long, value_enum, global = true, value_name = "BACKEND")]
    pub backend: Option<BackendArg>,

    /// The running daemon's control socket, for drain, undrain,
    /// check-now, reload and routes; default control.socket of the
    /// configuration file, else /run/anycastd/control/control.sock.
    #[arg(long, env = "ANYCASTD_SOCKET", global = true, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The manual's DESCRIPTION, and the top of `--help`.
const LONG_ABOUT: &str = "\
Announce anycast or service prefixes over BGP only while the services behind them are healthy.

anycastd runs health checks against the services of this host (HTTP, DNS, ICMP, TFTP, NTP, \
TLS certificates, TCP, gRPC health, listening sockets, files, assigned addresses) and keeps each service's routes announced only while \
the service is up: when its checks fail, its routes are withdrawn and traffic moves to the \
healthy nodes; when they pass again, the routes come back. Nothing is announced before the \
first verdicts.

Routes reach the network through one backend: exabgp (anycastd runs as an ExaBGP helper \
process and writes announce and withdraw lines on its standard output), bird (anycastd \
writes an include file and has BIRD reconfigure through its control socket) or native \
(anycastd's own BGP speaker). The configuration file is described in anycastd.yaml(5).

Logs go to standard error; standard output belongs to ExaBGP.";

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the daemon: check services and announce their routes (default).
    Run,
    /// Load and check the configuration, print a one-line summary.
    Validate,
    /// Run every check once and print the results; exit 1 if a service is down.
    Check,
    /// Ask the running daemon for its status and print it; exit 1 unless
    /// every service is up.
    ///
    /// Reads /status (JSON) from the daemon's metrics listener, at
    /// metrics.address of the configuration file unless --url is given, and
    /// prints each service's state and checks (verdict, duration, reason),
    /// then each route: desired (up, degraded or draining) or not, and which
    /// backends announce it, then (native backend) each peer's BGP and BFD
    /// sessions. The same listener serves a status page for a browser at /.
    /// Exit 2 when the daemon cannot be reached.
    Status {
        /// Where the daemon serves its status, http://HOST:PORT[/PATH] (path
        /// /status when none is given), instead of metrics.address of the
        /// configuration file.
        #[arg(long, value_name = "URL", value_hint = clap::ValueHint::Url)]
        url: Option<String>,
    },
    /// Drain services (every service when none are named): announce their
    /// routes with GRACEFUL_SHUTDOWN (65535:0) and the draining profile for
    /// drain_time, then withdraw them.
    ///
    /// Talks to the running daemon over its control socket. The drain is
    /// kept in the state file, so it survives a restart, until `anycastd
    /// undrain`. Prints each service's state; exit 2 for an unknown
    /// service or when the daemon cannot be reached.
    Drain {
        /// Services to drain; none drains the whole node.
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Lift drains set by `anycastd drain` (the node's when no service is
    /// named); routes come back once the service is up.
    ///
    /// A maintenance file that exists keeps its drain: remove the file.
    Undrain {
        /// Services to undrain; none undrains the node.
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Run a round of checks of the named services (all when none) now,
    /// instead of at their next interval.
    CheckNow {
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Reload the daemon's configuration file (as SIGHUP does) and print
    /// the route changes; exit 1 when it is refused.
    ///
    /// A reload that would withdraw more than announcer.max_withdraw
    /// routes is refused with their list unless --force is given.
    Reload {
        /// Apply it even above announcer.max_withdraw.
        #[arg(long)]
        force: bool,
        /// Only print what it would announce, withdraw or re-announce.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print what loading CONFIG would announce, withdraw or re-announce
    /// in the running daemon, without loading it.
    Routes {
        /// The configuration to compare with the running one; the daemon
        /// reads it, so give a path it can read.
        #[arg(long, value_name = "CONFIG", value_hint = clap::ValueHint::FilePath)]
        diff: PathBuf,
    },
    /// Empty the BIRD include file(s) and have BIRD reconfigure (for systemd's
    /// ExecStopPost after a crash); exit 1 if BIRD could not be updated.
    BirdFlush,
    /// Write the man page or the shell completions into a directory (for packagers).
    ///
    /// man writes anycastd.8; completions writes anycastd.bash, _anycastd
    /// (zsh) and anycastd.fish. The copies in the source tree are made this
    /// way: anycastd generate man man/ and anycastd generate completions
    /// completions/.
    Generate {
        /// What to write.
        #[arg(value_enum, value_name = "WHAT")]
        what: Generated,
        /// Directory to write into; it must exist.
        #[arg(value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        dir: PathBuf,
    },
}

/// Where the packaged unit's control socket is (RuntimeDirectory=anycastd).
pub const DEFAULT_SOCKET: &str = "/run/anycastd/control/control.sock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    /// The man page, anycastd.8.
    Man,
    /// bash, zsh and fish completions.
    Completions,
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
