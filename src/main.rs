//! The `anycastd` binary: parses the command line, sets up logging and runs
//! the chosen subcommand. The only place that uses `anyhow`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use anycastd::backend::{self, BackendError, exabgp::ExabgpError};
use anycastd::cli::{Cli, Command, Generated, LogFormat, generate};
use anycastd::config::{self, Config, format_duration};
use anycastd::control::{self, Reloader, Request};
use anycastd::engine::{
    self, DesiredRoutes, EngineCommand, EngineHooks, Heartbeat, PreparedService,
};
use anycastd::peers::PeerReporter;
use anycastd::route::AnnouncedReporter;
use anycastd::{metrics, status};

/// Exit codes, documented in the man page.
const EXIT_DOWN_OR_PEER_GONE: u8 = 1;
const EXIT_CONFIG: u8 = 2;

/// An error with the exit code it should end the process with.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn config_failure(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_CONFIG,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    anycastd::install_crypto_provider();
    let result = match cli.command.clone().unwrap_or(Command::Run) {
        Command::Validate => validate(&cli),
        Command::Check => runtime().and_then(|rt| rt.block_on(check(&cli))),
        Command::Run => runtime().and_then(|rt| {
            let result = rt.block_on(run(&cli));
            // Reading stdin (ExaBGP's acks) takes a blocking thread that
            // cannot be cancelled; waiting for it would hang the exit until
            // ExaBGP writes again.
            rt.shutdown_background();
            result
        }),
        Command::Status { url } => show_status(&cli, url.as_deref()),
        Command::BirdFlush => runtime().and_then(|rt| rt.block_on(bird_flush(&cli))),
        Command::Drain { services } => ask(&cli, Request::Drain { services }),
        Command::Undrain { services } => ask(&cli, Request::Undrain { services }),
        Command::CheckNow { services } => ask(&cli, Request::CheckNow { services }),
        Command::Reload { force, dry_run } => ask(
            &cli,
            Request::Reload {
                force,
                dry_run,
                config: None,
            },
        ),
        Command::Routes { diff } => {
            // The daemon reads it: a relative path means ours, not its.
            let config = std::path::absolute(&diff).unwrap_or(diff);
            ask(
                &cli,
                Request::Reload {
                    force: false,
                    dry_run: true,
                    config: Some(config),
                },
            )
        }
        Command::Generate { what, dir } => generate_files(what, &dir),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("anycastd: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging(cli: &Cli) {
    // rustls logs every failed certificate verification at ERROR; for us that
    // is a check verdict, already reported with its reason.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(cli.log_level)
        .with_target("rustls", tracing::level_filters::LevelFilter::OFF)
        // Connection-pool chatter would drown anycastd's own debug lines.
        .with_target("hyper_util", tracing::level_filters::LevelFilter::INFO)
        .with_target("reqwest", tracing::level_filters::LevelFilter::INFO);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(cli.log_level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    match cli.log_format {
        LogFormat::Text => builder.finish().with(filter).init(),
        LogFormat::Json => builder.json().finish().with(filter).init(),
    }
}

/// One thread runs everything: checks are I/O-bound, and with no wake-ups
/// across worker threads 1,000 HTTP checks a second cost about half the CPU
/// (4% of a core instead of 8%, see bench/). Blocking work (file writes with
/// fsync, DNS via getaddrinfo, ExaBGP's stdio) goes to tokio's blocking pool.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(|error| Failure {
            code: EXIT_DOWN_OR_PEER_GONE,
            error,
        })
}

/// Sends one request to the running daemon's control socket and prints
/// its answer: exit 0 when done, 1 when refused, 2 when it cannot be asked.
fn ask(cli: &Cli, request: Request) -> Result<u8, Failure> {
    let path = match &cli.socket {
        Some(path) => path.clone(),
        None => config::load(&cli.config, cli.backend.map(Into::into))
            .ok()
            .and_then(|c| c.control.socket)
            .unwrap_or_else(|| anycastd::cli::DEFAULT_SOCKET.into()),
    };
    let response = control::request(&path, &request).map_err(config_failure)?;
    if response.ok {
        print_out(&response.message);
        if !response.message.ends_with('\n') {
            print_out("\n");
        }
        Ok(0)
    } else {
        let refused = matches!(request, Request::Reload { .. })
            && response.message.starts_with("reload refused");
        Err(Failure {
            code: if refused {
                EXIT_DOWN_OR_PEER_GONE
            } else {
                EXIT_CONFIG
            },
            error: anyhow::anyhow!(response.message),
        })
    }
}

/// Loads the config and builds every check; any problem is a config failure.
fn load(cli: &Cli) -> Result<(Config, Vec<PreparedService>), Failure> {
    let config = config::load(&cli.config, cli.backend.map(Into::into)).map_err(config_failure)?;
    let prepared = engine::prepare(&config.services).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {e}", config.source.display()))
            .collect();
        config_failure(anyhow::anyhow!(lines.join("\n")))
    })?;
    Ok((config, prepared))
}

/// For `run` and `check` (and reloads): config warnings go to the log.
fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!("{}: {warning}", config.source.display());
    }
}

fn validate(cli: &Cli) -> Result<u8, Failure> {
    let (config, _) = load(cli)?;
    backend::build(
        &config,
        AnnouncedReporter::default(),
        PeerReporter::default(),
    )
    .map_err(config_failure)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    println!("{}", config.summary());
    Ok(0)
}

async fn check(cli: &Cli) -> Result<u8, Failure> {
    let (config, prepared) = load(cli)?;
    log_warnings(&config);
    let rounds = futures_util::future::join_all(prepared.iter().map(engine::run_round)).await;
    let mut rows = vec![vec![
        "SERVICE".to_string(),
        "CHECK".into(),
        "VERDICT".into(),
        "DURATION".into(),
        "REASON".into(),
    ]];
    let mut all_up = true;
    for (service, round) in prepared.iter().zip(&rounds) {
        for check in &round.checks {
            rows.push(vec![
                service.config.name.clone(),
                check.name.clone(),
                if check.passed { "pass" } else { "fail" }.into(),
                format_duration(round_to_micros(check.duration)),
                check.reason.clone(),
            ]);
        }
        all_up &= round.passed;
        rows.push(vec![
            service.config.name.clone(),
            format!("(service, {})", service.config.strategy.name()),
            match round.level {
                engine::health::Level::Passing => "up",
                engine::health::Level::Degraded => "degraded",
                engine::health::Level::Failing => "down",
            }
            .into(),
            String::new(),
            String::new(),
        ]);
    }
    print_out(&status::table(&rows));
    Ok(if all_up { 0 } else { EXIT_DOWN_OR_PEER_GONE })
}

fn round_to_micros(d: Duration) -> Duration {
    Duration::from_micros(d.as_micros() as u64)
}

/// Prints to stdout; a closed stdout (`| head`) is not an error worth a panic.
fn print_out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// `anycastd status`: the running daemon's `/status`, as a table.
fn show_status(cli: &Cli, url: Option<&str>) -> Result<u8, Failure> {
    let url = match url {
        Some(url) => url.to_string(),
        None => {
            let config = config::load(&cli.config, cli.backend.map(Into::into)).map_err(|e| {
                // The daemon's address is in its config: without one, say
                // what to pass instead of only that the file is missing.
                let hint = match &e {
                    config::ConfigError::Read { .. } => {
                        "\n(the daemon serves /status on its metrics address: pass --config \
                         with its configuration file, or --url http://HOST:PORT/status)"
                    }
                    _ => "",
                };
                config_failure(anyhow::anyhow!("{e}{hint}"))
            })?;
            let Some(address) = config.metrics else {
                return Err(config_failure(anyhow::anyhow!(
                    "{}: metrics are disabled, and /status is served on the metrics listener: \
                     set metrics.enabled and metrics.address, or pass --url",
                    config.source.display()
                )));
            };
            status::url_for(address)
        }
    };
    let report = status::fetch(&url, Duration::from_secs(5))
        .context("cannot read the daemon's status (is anycastd running?)")
        .map_err(config_failure)?;
    print_out(&status::render(&report));
    Ok(if report.all_up() {
        0
    } else {
        EXIT_DOWN_OR_PEER_GONE
    })
}

/// `anycastd generate man|completions DIR`.
fn generate_files(what: Generated, dir: &std::path::Path) -> Result<u8, Failure> {
    let written = match what {
        Generated::Man => generate::write_man(dir),
        Generated::Completions => generate::write_completions(dir),
    }
    .with_context(|| format!("cannot write into {}", dir.display()))
    .map_err(config_failure)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(0)
}

async fn bird_flush(cli: &Cli) -> Result<u8, Failure> {
    let config =
        config::load(&cli.config, Some(config::BackendKind::Bird)).map_err(config_failure)?;
    let Some(bird) = &config.bird else {
        return Err(config_failure(anyhow::anyhow!("announcer.bird is not set")));
    };
    match backend::bird::flush(bird).await {
        Ok(done) => {
            let what = match done {
                backend::bird::Flushed::Reconfigured => "BIRD reconfigured",
                backend::bird::Flushed::BirdNotRunning => "BIRD is not running",
            };
            println!("{}: emptied; {what}", bird.include_file.display());
            Ok(0)
        }
        Err(e) => Err(Failure {
            code: EXIT_DOWN_OR_PEER_GONE,
            error: e.into(),
        }),
    }
}

async fn run(cli: &Cli) -> Result<u8, Failure> {
    let (config, prepared) = load(cli)?;
    log_warnings(&config);
    raise_file_limit();
    let (reporter, announced) = AnnouncedReporter::channel();
    let (peer_reporter, peers) = PeerReporter::channel();
    let backend = backend::build(&config, reporter, peer_reporter).map_err(config_failure)?;
    let runtime_failure = |error: anyhow::Error| Failure {
        code: EXIT_DOWN_OR_PEER_GONE,
        error,
    };

    let board = status::StatusBoard::new();
    let stop_metrics = CancellationToken::new();
    let mut metrics_task = None;
    if let Some(address) = config.metrics {
        let handle = metrics::install()
            .context("cannot install the metrics recorder")
            .map_err(runtime_failure)?;
        let listener = metrics::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address}"))
            .map_err(runtime_failure)?;
        metrics_task = Some(tokio::spawn(metrics::serve(
            listener,
            handle,
            board.clone(),
            stop_metrics.clone(),
        )));
    }

    let mut hangup = signal(SignalKind::hangup()).map_err(|e| runtime_failure(e.into()))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| runtime_failure(e.into()))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| runtime_failure(e.into()))?;

    let (desired_tx, desired_rx) = watch::channel(DesiredRoutes::empty());
    let (commands_tx, commands_rx) = mpsc::channel(4);
    let stop_engine = CancellationToken::new();
    let stop_backend = CancellationToken::new();
    tracing::info!(
        file = %config.source.display(),
        backend = backend.name(),
        services = config.services.len(),
        "anycastd starting"
    );
    let reloader = Reloader {
        path: cli.config.clone(),
        backend: cli.backend.map(Into::into),
        started_with: std::sync::Arc::new(config.clone()),
        commands: commands_tx.clone(),
    };
    let stop_control = CancellationToken::new();
    let mut control_task = None;
    if let Some(path) = &config.control.socket {
        let listener = control::bind(path, config.control.socket_mode)
            .with_context(|| format!("cannot listen on the control socket {}", path.display()))
            .map_err(runtime_failure)?;
        tracing::info!(socket = %path.display(), "control socket listening");
        control_task = Some(tokio::spawn(control::serve(
            listener,
            path.clone(),
            reloader.clone(),
            stop_control.clone(),
        )));
    }
    let graceful = config.drain.graceful_shutdown;
    let drain_bound = config
        .services
        .iter()
        .map(|s| s.drain_time)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(1);
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut announced_after_drain = announced.clone();
    let hooks = EngineHooks {
        status: Some(board),
        ready: Some(ready_tx),
        heartbeat: watchdog(),
        announced: Some(announced),
        peers: Some(peers),
    };
    let mut engine_task = tokio::spawn(engine::run(
        config,
        prepared,
        desired_tx,
        commands_rx,
        stop_engine.clone(),
        hooks,
    ));
    let shutdown_bound = backend.shutdown_bound() + Duration::from_secs(1);
    let mut backend_task = tokio::spawn(backend.run(desired_rx, stop_backend.clone()));

    // Until a signal or a fault: systemd waits for READY=1 meanwhile.
    let mut ready_rx = Some(ready_rx);
    let end = loop {
        tokio::select! {
            first = until_ready(&mut ready_rx) => {
                ready_rx = None;
                if first {
                    tracing::info!("every service has its first verdict");
                    notify(&[sd_notify::NotifyState::Ready]);
                }
            }
            _ = hangup.recv() => {
                let ready = ready_rx.is_none();
                if ready {
                    notify_reloading();
                }
                reload(&reloader).await;
                if ready {
                    notify(&[sd_notify::NotifyState::Ready]);
                }
            }
            _ = terminate.recv() => break End::Signal,
            _ = interrupt.recv() => break End::Signal,
            result = &mut backend_task => break End::Backend(result),
            // The engine and the listener run until we stop them: ending
            // on their own is a fault (a panic, most likely).
            result = &mut engine_task => break End::Fault("engine", join_failure(result)),
            result = until_done(&mut metrics_task) => {
                metrics_task = None;
                break End::Fault("metrics listener", join_failure(result));
            }
            result = until_done(&mut control_task) => {
                control_task = None;
                break End::Fault("control socket", join_failure(result));
            }
        }
    };
    if matches!(end, End::Signal) && graceful {
        // Announce with GRACEFUL_SHUTDOWN for drain_time, withdraw, then
        // close the sessions below: the peers move traffic before we go.
        notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!(bound = %format_duration(drain_bound), "shutting down gracefully: draining every service");
        let (drained_tx, drained_rx) = oneshot::channel();
        if commands_tx
            .send(EngineCommand::Shutdown {
                drained: drained_tx,
            })
            .await
            .is_ok()
        {
            tokio::select! {
                _ = async {
                    let _ = drained_rx.await;
                    // The withdrawals go out before the sessions close:
                    // wait (briefly) until the backend reports none left.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        announced_after_drain.wait_for(|all| all.values().all(|r| r.is_empty())),
                    )
                    .await;
                } => tracing::info!("drained and withdrawn"),
                _ = tokio::time::sleep(drain_bound) => tracing::warn!("drain did not finish in time; withdrawing"),
                _ = terminate.recv() => tracing::warn!("second signal: withdrawing now"),
                _ = interrupt.recv() => tracing::warn!("second signal: withdrawing now"),
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    match &end {
        End::Signal => tracing::info!("shutting down: withdrawing routes"),
        End::Fault(task, why) => tracing::error!(
            task = *task,
            reason = %why,
            "internal fault: withdrawing routes and exiting so the service manager restarts anycastd"
        ),
        End::Backend(_) => {}
    }

    stop_engine.cancel();
    stop_metrics.cancel();
    stop_control.cancel();
    // Nothing the other side does may hold the exit past this.
    let deadline = tokio::time::Instant::now() + shutdown_bound;
    if !engine_task.is_finished() {
        let _ = tokio::time::timeout_at(deadline, &mut engine_task).await;
    }
    let fault = match &end {
        End::Fault(task, why) => Some(format!("internal fault in the {task}: {why}")),
        _ => None,
    };
    let result = match end {
        End::Backend(result) => result,
        End::Signal | End::Fault(..) => {
            stop_backend.cancel();
            tokio::select! {
                result = &mut backend_task => result,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        bound = %format_duration(shutdown_bound),
                        "the backend did not finish withdrawing in time; exiting anyway"
                    );
                    Ok(Ok(()))
                }
                _ = terminate.recv() => std::process::exit(1),
                _ = interrupt.recv() => std::process::exit(1),
            }
        }
    };
    if let Some(task) = metrics_task.take() {
        let _ = tokio::time::timeout_at(deadline, task).await;
    }
    if let Some(task) = control_task.take() {
        let _ = tokio::time::timeout_at(deadline, task).await;
    }
    if let Some(fault) = fault {
        return Err(runtime_failure(anyhow::anyhow!(fault)));
    }
    match result {
        Ok(Ok(())) => Ok(0),
        Ok(Err(BackendError::Exabgp(ExabgpError::PeerShutdown))) => {
            tracing::info!("ExaBGP is shutting down; exiting");
            Ok(0)
        }
        Ok(Err(e)) => Err(runtime_failure(e.into())),
        Err(join) => Err(runtime_failure(anyhow::anyhow!(
            "internal fault in the backend: {}",
            join_failure::<()>(Err(join))
        ))),
    }
}

/// Why `run` stopped waiting.
enum End {
    /// SIGTERM or SIGINT.
    Signal,
    /// The backend returned on its own (ExaBGP went away, or a fault).
    Backend(Result<Result<(), BackendError>, tokio::task::JoinError>),
    /// A task that should run until stopped ended: which one, and why.
    Fault(&'static str, String),
}

/// A task's end described for the log: its panic message, or that it ended.
fn join_failure<T>(result: Result<T, tokio::task::JoinError>) -> String {
    match result {
        Ok(_) => "it ended on its own".to_string(),
        Err(e) if e.is_panic() => {
            format!("it panicked: {}", engine::panic_message(&*e.into_panic()))
        }
        Err(e) => e.to_string(),
    }
}

/// Waits for an optional task; never resolves without one.
async fn until_done<T>(
    task: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Raises the soft limit on open files to the hard one: each check holds a
/// socket while it runs, and the default soft limit (1024) is near what
/// 1,000 services need. Failing to raise it is worth a warning, not an exit.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// Resolves when the engine's ready signal fires (`true`) or can no longer
/// fire (`false`); never once it has been taken (`None`).
async fn until_ready(ready: &mut Option<oneshot::Receiver<()>>) -> bool {
    match ready {
        Some(ready) => ready.await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Tells systemd (`NOTIFY_SOCKET`) about a state change; nothing without it.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// RELOADING=1 with the MONOTONIC_USEC that systemd's Type=notify-reload wants.
fn notify_reloading() {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
        Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
    }
}

/// systemd's watchdog (`WATCHDOG_USEC`): the engine's core loop sends
/// WATCHDOG=1 at half the interval, so a stuck loop stops the pings.
fn watchdog() -> Option<Heartbeat> {
    let interval = sd_notify::watchdog_enabled()?;
    if interval.is_zero() {
        return None;
    }
    tracing::info!(interval = ?interval, "systemd watchdog enabled");
    Some(Heartbeat {
        period: interval / 2,
        beat: Box::new(|| notify(&[sd_notify::NotifyState::Watchdog])),
    })
}

/// SIGHUP: load and prepare the new config; a bad one (or one withdrawing
/// more than `max_withdraw`) is logged and the running one stays.
async fn reload(reloader: &Reloader) {
    tracing::info!(file = %reloader.path.display(), "SIGHUP: reloading configuration");
    match reloader.reload(false, false, None).await {
        Ok(message) => {
            metrics::config_reload(true);
            tracing::debug!("{message}");
        }
        Err(why) => {
            metrics::config_reload(false);
            tracing::error!(
                "configuration reload failed; keeping the running configuration: {why}"
            );
        }
    }
}
