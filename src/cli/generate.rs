//! `anycastd generate`: the man page `anycastd(8)` and the bash, zsh and fish
//! completions, all from the clap definitions in [`super`].
//!
//! clap_mangen renders the title, synopsis, description and global options;
//! this module adds a COMMANDS section with each subcommand's own arguments
//! (clap_mangen would point to one page per subcommand) and the sections of
//! [`MANUAL`], which `--help` shows as plain text too. The configuration
//! file's page, `anycastd.yaml(5)`, is written by hand in `man/`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Arg, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use super::Cli;

/// One piece of a manual section.
pub enum Block {
    /// A paragraph.
    Para(&'static str),
    /// A tagged paragraph: a term (set in bold) and what it means.
    Item(&'static str, &'static str),
    /// Literal lines, such as a unit file.
    Example(&'static str),
}

/// A section of the manual beyond options and commands.
pub struct Section {
    /// Upper case, as man pages spell section names.
    pub heading: &'static str,
    pub blocks: &'static [Block],
}

use Block::{Example, Item, Para};

/// The manual's sections after COMMANDS, in order.
pub const MANUAL: &[Section] = &[
    Section {
        heading: "EXIT STATUS",
        blocks: &[
            Item(
                "0",
                "Success. For run: stopped by SIGTERM or SIGINT after withdrawing every route, \
                 or ExaBGP said it is shutting down. For check and status: every service is up.",
            ),
            Item(
                "1",
                "For check: a service is down. For status: a service is down or not decided \
                 yet. For run: the backend's peer went away (ExaBGP closed anycastd's standard input or \
                 output; ExaBGP restarts its helper), a fault at start such as the metrics \
                 address being in use, an internal fault (a task panicked or ended: routes are \
                 withdrawn first, so that the service manager restarts a clean process), or a \
                 second SIGTERM or SIGINT during shutdown. For bird-flush: BIRD could not be \
                 updated. For reload: the daemon refused it (above announcer.max_withdraw, \
                 or a configuration it cannot load).",
            ),
            Item(
                "2",
                "Configuration or usage error: the configuration file cannot be read or is \
                 invalid (every problem is printed with the file, the key path and what was \
                 expected), or an unknown flag or value. For status: the daemon cannot be \
                 reached or did not answer with its status. For drain, undrain, check-now, \
                 reload and routes: the control socket cannot be reached, or a service \
                 named does not exist.",
            ),
        ],
    },
    Section {
        heading: "SIGNALS",
        blocks: &[
            Para("These apply to run."),
            Item(
                "SIGHUP",
                "Reload the configuration file. A file with errors is logged and the running \
                 configuration stays. A good one is applied at once: services that did not \
                 change keep their state and their checks keep running, and routes whose \
                 protecting services did not change are neither withdrawn nor re-announced. \
                 Backend settings (announcer.backend and the backend's own section) take \
                 effect at the next start. A reload that would withdraw more routes than \
                 announcer.max_withdraw is refused and logged with their list; anycastd \
                 reload --force applies it.",
            ),
            Item(
                "SIGTERM, SIGINT",
                "With announcer.graceful_shutdown, first drain every service: announce its \
                 routes with GRACEFUL_SHUTDOWN (65535:0) for drain_time (bounded by the \
                 longest drain_time plus a second), so routers move traffic away. Then \
                 withdraw every route, make sure the withdrawal reached the backend (exabgp: \
                 lines flushed and acknowledged, waiting at most \
                 announcer.exabgp.shutdown_timeout; bird: include file emptied and BIRD \
                 reconfigured; native: UPDATE messages sent), then exit 0. The exit is \
                 bounded whatever the other side does: at most the backend's own bound \
                 (exabgp: shutdown_timeout; bird: twice reconfigure_timeout; native: 5 s) \
                 plus a second.",
            ),
            Item(
                "second SIGTERM or SIGINT",
                "Received while withdrawing: exit 1 at once, without waiting for the backend.",
            ),
        ],
    },
    Section {
        heading: "ENVIRONMENT",
        blocks: &[
            Item(
                "CONFIG_PATH",
                "The configuration file when -c is not given.",
            ),
            Item("LOG_LEVEL", "The log level when --log-level is not given."),
            Item(
                "ANYCASTD_SOCKET",
                "The control socket when --socket is not given.",
            ),
            Item(
                "RUNTIME_DIRECTORY, STATE_DIRECTORY",
                "Set by systemd's RuntimeDirectory= and StateDirectory=. Unless \
                 control.socket and control.state_file say otherwise, run listens on \
                 $RUNTIME_DIRECTORY/control.sock and keeps drains in \
                 $STATE_DIRECTORY/drains.json; without them there is no control socket and \
                 drains last until the daemon stops.",
            ),
            Item(
                "NOTIFY_SOCKET",
                "Set by systemd for Type=notify and Type=notify-reload services. anycastd \
                 then sends READY=1 once every service has had its first round of checks \
                 (and the routes that follow were handed to the backend), RELOADING=1 and \
                 READY=1 around a SIGHUP reload, and STOPPING=1 when it starts to shut down. \
                 Unset: nothing is sent.",
            ),
            Item(
                "WATCHDOG_USEC, WATCHDOG_PID",
                "Set by systemd's WatchdogSec=. anycastd sends WATCHDOG=1 at half that \
                 interval from the engine's core loop, so an engine that stops working also \
                 stops the pings and systemd restarts it.",
            ),
        ],
    },
    Section {
        heading: "FILES",
        blocks: &[
            Item(
                "/config.yaml",
                "The configuration file when neither -c nor CONFIG_PATH is given (as in the \
                 original anycastd's container image). YAML (.yaml, .yml) or JSON (.json); \
                 see anycastd.yaml(5).",
            ),
            Item(
                "/run/anycastd/control/control.sock",
                "The control socket of the packaged unit (RuntimeDirectory=anycastd/control), \
                 and where drain, undrain, check-now, reload and routes look when neither \
                 --socket nor control.socket says otherwise.",
            ),
            Item(
                "/var/lib/anycastd/drains.json",
                "Drains set with anycastd drain, kept across restarts by the packaged unit \
                 (StateDirectory=anycastd). A file that cannot be read drains the whole node \
                 until anycastd undrain.",
            ),
        ],
    },
    Section {
        heading: "METRICS AND STATUS",
        blocks: &[
            Para(
                "With metrics.enabled set, the daemon serves HTTP at metrics.address \
                 (see anycastd.yaml(5)):",
            ),
            Item(
                "GET /metrics",
                "Prometheus metrics: service and check state, check durations, desired and \
                 announced routes, backend updates and errors, route change latency, \
                 configuration reloads, and the checks' own measurements.",
            ),
            Item(
                "GET /status",
                "The daemon's status as JSON: version; services, each with name, state (up, \
                 down or unknown), rounds and checks, each check with name, verdict (pass, \
                 fail or unknown), reason and duration_ms of its last round; routes, with \
                 configured (every route the configuration names), desired (the routes whose \
                 protecting services are all up) and announced (for each backend, the routes \
                 it announces). anycastd status prints it as a table.",
            ),
        ],
    },
    Section {
        heading: "EXAMPLES",
        blocks: &[
            Para("Check a configuration, then run every check once:"),
            Example(
                "anycastd -c /etc/anycastd.yaml validate\nanycastd -c /etc/anycastd.yaml check",
            ),
            Para("Run under ExaBGP (in exabgp.conf):"),
            Example(
                "process anycastd {\n    run /usr/bin/anycastd -c /etc/anycastd.yaml --backend exabgp;\n    encoder text;\n}",
            ),
            Para("Run under systemd with the bird backend:"),
            Example(
                "[Service]\nType=notify-reload\nExecStart=/usr/bin/anycastd -c /etc/anycastd.yaml\nExecStopPost=/usr/bin/anycastd -c /etc/anycastd.yaml bird-flush\nWatchdogSec=30s\nRestart=on-failure",
            ),
            Para("Ask the running daemon how it is doing:"),
            Example("anycastd -c /etc/anycastd.yaml status\ncurl http://127.0.0.1:9180/status"),
        ],
    },
    Section {
        heading: "SEE ALSO",
        blocks: &[Para(
            "anycastd.yaml(5), exabgp(1), bird(8), systemd.service(5), sd_notify(3)",
        )],
    },
];

/// [`MANUAL`] as plain text, for `--help`.
pub fn manual_text() -> String {
    let mut out = String::new();
    for section in MANUAL {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&title_case(section.heading));
        out.push_str(":\n");
        for block in section.blocks {
            match block {
                Para(text) => out.push_str(&format!("  {text}\n")),
                Item(term, text) => out.push_str(&format!("  {term}\n          {text}\n")),
                Example(lines) => {
                    for line in lines.lines() {
                        out.push_str(&format!("      {line}\n"));
                    }
                }
            }
        }
    }
    out.trim_end().to_string()
}

fn title_case(heading: &str) -> String {
    let lower = heading.to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The date of the manual's last non-trivial change, for its title line.
const MANUAL_DATE: &str = "2026-11-25";

/// The man page `anycastd(8)`, as roff.
pub fn man_page() -> Vec<u8> {
    let mut command = Cli::command();
    command.build();
    let man = Man::new(command.clone())
        .title("ANYCASTD")
        .section("8")
        .date(MANUAL_DATE)
        .manual("System Administration");
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);

    let mut roff = Roff::new();
    roff.control("SH", ["OPTIONS"]);
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        render_arg(&mut roff, arg);
    }

    roff.control("SH", ["COMMANDS"]);
    roff.text([roman(
        "Without a command, anycastd runs the daemon. The options above apply to every command.",
    )]);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut synopsis = vec![bold(sub.get_name())];
        for arg in own_args(sub) {
            synopsis.push(roman(" "));
            synopsis.extend(arg_synopsis(arg));
        }
        roff.control("TP", []);
        roff.text(synopsis);
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        for (i, paragraph) in about.split("\n\n").enumerate() {
            if i > 0 {
                roff.control("IP", []);
            }
            roff.text([roman(sentence(&unwrap_lines(paragraph)))]);
        }
        let args: Vec<&Arg> = own_args(sub).collect();
        if !args.is_empty() {
            roff.control("RS", []);
            for arg in args {
                render_arg(&mut roff, arg);
            }
            roff.control("RE", []);
        }
    }
    for section in MANUAL {
        roff.control("SH", [section.heading]);
        for (i, block) in section.blocks.iter().enumerate() {
            match block {
                Para(text) => {
                    if i > 0 {
                        roff.control("PP", []);
                    }
                    roff.text([roman(*text)]);
                }
                Item(term, text) => {
                    roff.control("TP", []);
                    roff.text([bold(*term)]);
                    roff.text([roman(*text)]);
                }
                Example(lines) => {
                    roff.control("IP", []);
                    roff.control("nf", []);
                    for line in lines.lines() {
                        roff.text([roman(line)]);
                    }
                    roff.control("fi", []);
                }
            }
        }
    }
    let _ = roff.to_writer(&mut out);
    let _ = man.render_version_section(&mut out);
    out
}

/// One option or argument: a tagged paragraph with its help, its values,
/// default and environment variable.
fn render_arg(roff: &mut Roff, arg: &Arg) {
    let mut header = Vec::new();
    if let Some(short) = arg.get_short() {
        header.push(bold(format!("-{short}")));
        if arg.get_long().is_some() {
            header.push(roman(", "));
        }
    }
    if let Some(long) = arg.get_long() {
        header.push(bold(format!("--{long}")));
    }
    if arg.get_action().takes_values() {
        if !header.is_empty() {
            header.push(roman(" "));
        }
        header.push(italic(value_name(arg)));
    }
    roff.control("TP", []);
    roff.text(header);

    let mut help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| sentence(&unwrap_lines(&h.to_string())))
        .unwrap_or_default();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| match v.get_help() {
            Some(h) => format!("{} ({})", v.get_name(), lower_first(&h.to_string())),
            None => v.get_name().to_string(),
        })
        .collect();
    if arg.get_action().takes_values() && !values.is_empty() {
        help.push_str(&format!(" One of: {}.", values.join("; ")));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() {
        help.push_str(&format!(" Default: {}.", defaults.join(" ")));
    }
    if let Some(env) = arg.get_env() {
        help.push_str(&format!(" Environment: {}.", env.to_string_lossy()));
    }
    roff.text([roman(help.trim().to_string())]);
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .map(|v| v.join(" "))
        .unwrap_or_else(|| arg.get_id().to_string())
}

/// A subcommand's own arguments: not the global ones, not help/version.
fn own_args(sub: &clap::Command) -> impl Iterator<Item = &Arg> {
    sub.get_arguments().filter(|a| {
        !a.is_global_set() && !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version")
    })
}

/// `--url URL` or `DIR`, bracketed when optional.
fn arg_synopsis(arg: &Arg) -> Vec<Inline> {
    let mut parts = Vec::new();
    if let Some(long) = arg.get_long() {
        parts.push(bold(format!("--{long}")));
        parts.push(roman(" "));
    }
    parts.push(italic(value_name(arg)));
    if !arg.is_required_set() {
        parts.insert(0, roman("["));
        parts.push(roman("]"));
    }
    parts
}

/// Ends `text` with a full stop unless it ends with punctuation already
/// (clap drops the full stop of a one-line doc comment).
fn sentence(text: &str) -> String {
    let text = text.trim_end();
    if text.is_empty() || text.ends_with(['.', '!', '?', ':']) {
        text.to_string()
    } else {
        format!("{text}.")
    }
}

/// "Human-readable lines" → "human-readable lines", for text in parentheses;
/// names such as "BIRD", "ExaBGP" or "A" stay as they are.
fn lower_first(text: &str) -> String {
    let word = text.split_whitespace().next().unwrap_or_default();
    let mut chars = word.chars();
    let first = chars.next();
    let rest: String = chars.collect();
    match first {
        Some(c) if !rest.is_empty() && !rest.chars().any(char::is_uppercase) => {
            c.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text.to_string(),
    }
}

/// Joins a doc comment's wrapped lines into one.
fn unwrap_lines(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Writes `anycastd.8` into `dir`.
pub fn write_man(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let path = dir.join("anycastd.8");
    let mut file = std::fs::File::create(&path)?;
    file.write_all(&man_page())?;
    file.flush()?;
    Ok(vec![path])
}

/// Writes the bash, zsh and fish completions into `dir`.
pub fn write_completions(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut command = Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| clap_complete::generate_to(shell, &mut command, "anycastd", dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_documents_every_flag_command_and_variable() {
        let page = String::from_utf8(man_page()).unwrap();
        for needle in [
            r"\-\-config",
            r"\-\-log\-level",
            r"\-\-log\-format",
            r"\-\-backend",
            r"\-\-url",
            "CONFIG_PATH",
            "LOG_LEVEL",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "SIGHUP",
            "/config.yaml",
            ".SH \"EXIT STATUS\"",
        ] {
            assert!(page.contains(needle), "man page lacks {needle}");
        }
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name().replace('-', r"\-");
            assert!(
                page.contains(&format!("\\fB{name}\\fR")),
                "man page lacks command {name}"
            );
        }
    }

    #[test]
    fn help_shows_the_manual_sections() {
        let text = manual_text();
        assert!(text.starts_with("Exit status:\n  0\n"), "{text}");
        assert!(text.contains("Signals:\n"), "{text}");
    }
}
