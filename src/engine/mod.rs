//! The engine owns time and health: one task per service runs its checks
//! every `check_interval` (start to start); the engine loop feeds what they
//! report to [`core::Core`], the one owner of every service's state, and
//! carries out what it decides: publish the desired route set on a watch
//! channel for the backend, start and stop service tasks, log transitions.
//!
//! ```text
//!  service task ─┐ RoundReport            ┌─────────────┐
//!  service task ─┼───────────────► loop ──►│ Core (pure) │
//!  service task ─┘  task ended ──►  │  ◄───│  Outputs    │
//!        ▲           Tick (timer) ─►│      └─────────────┘
//!        └── Spawn / Stop ──────────┤
//!            Reload (SIGHUP) ──────►│──watch──► backend (DesiredRoutes)
//!                                   └──► status board, metrics, logs
//! ```
//!
//! Besides the desired routes, the loop reports to the rest of the process
//! through [`EngineHooks`]: the status board behind `GET /status`, a
//! one-shot signal once every service has its first verdict (systemd's
//! READY=1), and a heartbeat called from the loop itself (systemd's
//! watchdog), so a stuck loop stops beating.
//!
//! Service tasks live in a `JoinSet` owned by the loop: a task that ends or
//! panics is an input to the core (the service goes Down and is restarted),
//! and dropping the loop aborts them all.

pub mod core;
pub mod health;
pub mod routes;
pub mod runner;
pub mod schedule;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use self::core::{Core, Input, Output};
pub use crate::route::DesiredRoutes;
pub use health::ServiceState;
pub use routes::{RouteBook, Transition};
pub use runner::{
    CheckOutcome, PrepareError, PreparedService, RoundOutcome, panic_message, prepare, run_round,
};

use crate::config::Config;
use crate::metrics;
use crate::route::AnnouncedRoutes;
use crate::status::{self, CheckStatus, StatusBoard, Verdict};

/// A request to the running engine.
pub enum EngineCommand {
    /// Apply a new, already loaded and prepared config.
    Reload(Config, Vec<PreparedService>),
}

/// What the core loop reports besides the desired routes; every part is
/// optional and `EngineHooks::default()` has none.
#[derive(Default)]
pub struct EngineHooks {
    /// Kept up to date after every batch of rounds and every reload.
    pub status: Option<StatusBoard>,
    /// Fired once, when every service has finished its first round and the
    /// desired routes that follow have been published.
    pub ready: Option<oneshot::Sender<()>>,
    /// Called from the core loop itself every `period` while it runs.
    pub heartbeat: Option<Heartbeat>,
    /// What the backends report they announce, for the status board.
    pub announced: Option<watch::Receiver<AnnouncedRoutes>>,
}

/// A liveness callback of the core loop (see [`EngineHooks::heartbeat`]).
pub struct Heartbeat {
    pub period: Duration,
    pub beat: Box<dyn FnMut() + Send>,
}

/// A finished round from a service task.
struct RoundReport {
    service: String,
    /// Which incarnation of the service task sent it (reloads restart tasks).
    epoch: u64,
    outcome: RoundOutcome,
}

/// The service task running for a service now.
struct Running {
    epoch: u64,
    task: AbortHandle,
}

/// The engine loop's I/O side: the tasks it runs and where outputs go.
struct Carrier {
    started: tokio::time::Instant,
    /// Each service's checks, ready to hand to a (re)started task.
    prepared: HashMap<String, PreparedService>,
    tasks: JoinSet<()>,
    /// Which service and epoch each task in `tasks` runs.
    task_ids: HashMap<tokio::task::Id, (String, u64)>,
    running: HashMap<String, Running>,
    reports: mpsc::Sender<RoundReport>,
    desired: watch::Sender<DesiredRoutes>,
    hooks: EngineHooks,
}

impl Carrier {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Carries out the core's outputs; `decided_at` is when the inputs
    /// behind them happened (for the route change latency).
    fn carry_out(&mut self, outputs: Vec<Output>, decided_at: Instant) {
        for output in outputs {
            match output {
                Output::Spawn { service, epoch } => self.spawn(&service, epoch),
                Output::Stop { service } => {
                    if let Some(running) = self.running.remove(&service) {
                        running.task.abort();
                    }
                    self.prepared.remove(&service);
                }
                Output::Transition {
                    service,
                    from,
                    to,
                    reason,
                } => {
                    log_transition(&service, from, to, &reason);
                    if let Some(status) = &self.hooks.status {
                        status.set_state(&service, to.into());
                    }
                }
                Output::Publish { routes } => {
                    metrics::routes_desired(routes.len());
                    if let Some(status) = &self.hooks.status {
                        status.set_desired(routes.clone());
                    }
                    self.desired.send_modify(|desired| {
                        desired.routes = routes;
                        desired.changed_at = Some(decided_at);
                    });
                }
                Output::Configured { .. } => {}
                Output::Ready => {
                    self.desired.send_modify(|desired| desired.decided = true);
                    if let Some(ready) = self.hooks.ready.take() {
                        let _ = ready.send(());
                    }
                }
            }
        }
    }

    fn spawn(&mut self, service: &str, epoch: u64) {
        if let Some(previous) = self.running.remove(service) {
            previous.task.abort();
        }
        let Some(prepared) = self.prepared.get(service).cloned() else {
            return;
        };
        let count = self.prepared.len();
        let handle = self
            .tasks
            .spawn(service_task(prepared, count, epoch, self.reports.clone()));
        self.task_ids
            .insert(handle.id(), (service.to_string(), epoch));
        self.running.insert(
            service.to_string(),
            Running {
                epoch,
                task: handle,
            },
        );
    }

    /// Whether a report comes from the service's current task.
    fn current(&self, report: &RoundReport) -> bool {
        self.running
            .get(&report.service)
            .is_some_and(|r| r.epoch == report.epoch)
    }
}

/// Runs the engine until `shutdown` is cancelled. The desired route set is
/// published on `desired`; `hooks` are told as described on [`EngineHooks`].
pub async fn run(
    config: Config,
    services: Vec<PreparedService>,
    desired: watch::Sender<DesiredRoutes>,
    mut commands: mpsc::Receiver<EngineCommand>,
    shutdown: CancellationToken,
    mut hooks: EngineHooks,
) {
    let (report_tx, mut reports) = mpsc::channel::<RoundReport>(1024);
    if let Some(status) = &hooks.status {
        status.apply_config(&config);
    }
    for service in &services {
        metrics::service_up(&service.config.name, false);
    }
    let mut announced = hooks.announced.take();
    let mut heartbeat = hooks.heartbeat.take().map(|h| {
        // `interval` panics on zero.
        let mut ticker = tokio::time::interval(h.period.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        (ticker, h)
    });
    let mut carrier = Carrier {
        started: tokio::time::Instant::now(),
        prepared: services
            .into_iter()
            .map(|s| (s.config.name.clone(), s))
            .collect(),
        tasks: JoinSet::new(),
        task_ids: HashMap::new(),
        running: HashMap::new(),
        reports: report_tx,
        desired,
        hooks,
    };
    let mut core = Core::new();
    let outputs = core.handle(carrier.now(), Input::Configure(Arc::new(config)));
    carrier.carry_out(outputs, Instant::now());

    loop {
        let deadline = core.next_deadline().map(|d| carrier.started + d);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = beat(&mut heartbeat) => {}
            changed = reported(&mut announced) => {
                match changed {
                    Some(routes) => {
                        if let Some(status) = &carrier.hooks.status {
                            status.set_announced(&routes);
                        }
                    }
                    // The backend is gone; main notices that on its own.
                    None => announced = None,
                }
            }
            Some(report) = reports.recv() => {
                // Take every report already waiting, then carry out once:
                // many services flipping together become one change for the
                // backend.
                let decided_at = report.outcome.finished_at;
                let mut outputs = Vec::new();
                let mut next = Some(report);
                while let Some(report) = next {
                    if carrier.current(&report) {
                        record_round(&report);
                        outputs.extend(core.handle(carrier.now(), Input::Round {
                            service: report.service.clone(),
                            epoch: report.epoch,
                            passed: report.outcome.passed,
                            reason: report.outcome.failure_summary(),
                        }));
                        if let (Some(status), Some(state)) =
                            (&carrier.hooks.status, core.state(&report.service))
                        {
                            status.record_round(
                                &report.service,
                                check_statuses(&report.outcome),
                                state.into(),
                            );
                        }
                    }
                    next = reports.try_recv().ok();
                }
                keep_last_publish(&mut outputs);
                carrier.carry_out(outputs, decided_at);
            }
            Some(joined) = carrier.tasks.join_next_with_id() => {
                let (id, panic) = match joined {
                    Ok((id, ())) => (id, None),
                    Err(e) if e.is_panic() => {
                        let id = e.id();
                        (id, Some(panic_message(&*e.into_panic()).to_string()))
                    }
                    // Aborted by us: a replaced or removed task.
                    Err(e) => {
                        carrier.task_ids.remove(&e.id());
                        continue;
                    }
                };
                if let Some((service, epoch)) = carrier.task_ids.remove(&id) {
                    let outputs = core.handle(carrier.now(), Input::TaskEnded { service, epoch, panic });
                    carrier.carry_out(outputs, Instant::now());
                }
            }
            _ = sleep_until(deadline) => {
                let outputs = core.handle(carrier.now(), Input::Tick);
                carrier.carry_out(outputs, Instant::now());
            }
            Some(command) = commands.recv() => match command {
                EngineCommand::Reload(new_config, prepared) => {
                    if let Some(status) = &carrier.hooks.status {
                        status.apply_config(&new_config);
                    }
                    let source = new_config.source.clone();
                    let names: HashSet<String> =
                        prepared.iter().map(|p| p.config.name.clone()).collect();
                    carrier.prepared.retain(|name, _| names.contains(name));
                    for service in prepared {
                        // A kept service keeps its running task (and its checks).
                        carrier
                            .prepared
                            .entry(service.config.name.clone())
                            .and_modify(|p| {
                                if p.config != service.config {
                                    *p = service.clone();
                                }
                            })
                            .or_insert(service);
                    }
                    let outputs = core.handle(carrier.now(), Input::Configure(Arc::new(new_config)));
                    for output in &outputs {
                        if let Output::Configured { services, unchanged, removed } = output {
                            tracing::info!(
                                file = %source.display(),
                                services,
                                unchanged,
                                removed,
                                "configuration reloaded"
                            );
                        }
                    }
                    carrier.carry_out(outputs, Instant::now());
                }
            },
        }
    }
    carrier.tasks.shutdown().await;
}

/// Only the last route set of a batch matters to the backend.
fn keep_last_publish(outputs: &mut Vec<Output>) {
    let last = outputs
        .iter()
        .rposition(|o| matches!(o, Output::Publish { .. }));
    let mut at = 0;
    outputs.retain(|o| {
        let keep = !matches!(o, Output::Publish { .. }) || Some(at) == last;
        at += 1;
        keep
    });
}

/// One service's rounds, every `check_interval` start to start, reported
/// to the engine loop until it is aborted.
async fn service_task(
    service: PreparedService,
    services: usize,
    epoch: u64,
    reports: mpsc::Sender<RoundReport>,
) {
    let interval = service.config.check_interval;
    let start =
        tokio::time::Instant::now() + schedule::offset(&service.config.name, interval, services);
    let mut ticker = tokio::time::interval_at(start, interval);
    // A round longer than the interval delays the next; rounds never overlap.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = run_round(&service).await;
        let report = RoundReport {
            service: service.config.name.clone(),
            epoch,
            outcome,
        };
        if reports.send(report).await.is_err() {
            // The engine loop is gone; so is the reason to run.
            std::future::pending::<()>().await;
        }
    }
}

/// A round's checks as the status board shows them.
fn check_statuses(outcome: &RoundOutcome) -> Vec<CheckStatus> {
    outcome
        .checks
        .iter()
        .map(|check| CheckStatus {
            name: check.name.clone(),
            verdict: if check.passed {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            reason: check.reason.clone(),
            duration_ms: Some(status::round_ms(check.duration)),
        })
        .collect()
}

impl From<ServiceState> for status::State {
    fn from(state: ServiceState) -> status::State {
        match state {
            ServiceState::Unknown => status::State::Unknown,
            ServiceState::Up => status::State::Up,
            ServiceState::Down => status::State::Down,
        }
    }
}

fn record_round(report: &RoundReport) {
    for check in &report.outcome.checks {
        metrics::check_result(
            &report.service,
            &check.name,
            check.passed,
            check.duration.as_secs_f64(),
        );
        if !check.passed {
            tracing::debug!(service = %report.service, check = %check.name, reason = %check.reason, "check failed");
        }
    }
}

fn log_transition(service: &str, from: ServiceState, to: ServiceState, reason: &str) {
    metrics::service_up(service, to == ServiceState::Up);
    metrics::service_transition(service, to.as_str());
    match to {
        ServiceState::Up => tracing::info!(
            service = %service,
            from = from.as_str(),
            "service is up"
        ),
        _ => tracing::warn!(
            service = %service,
            from = from.as_str(),
            reason = %reason,
            "service is down"
        ),
    }
}

/// Waits for the next heartbeat tick and beats; never resolves without a heartbeat.
async fn beat(heartbeat: &mut Option<(tokio::time::Interval, Heartbeat)>) {
    match heartbeat {
        Some((ticker, heartbeat)) => {
            ticker.tick().await;
            (heartbeat.beat)();
        }
        None => std::future::pending().await,
    }
}

/// The next report of what the backends announce; `None` once they are
/// gone, never without a receiver.
async fn reported(
    announced: &mut Option<watch::Receiver<AnnouncedRoutes>>,
) -> Option<AnnouncedRoutes> {
    match announced {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::runner::PreparedCheck;
    use super::*;
    use crate::checks::{AttemptFuture, AttemptPolicy, Check};
    use crate::config::{BackendKind, Format, load_str};

    /// Takes `busy` per attempt; records when each attempt started and how
    /// many ran at once.
    struct Slow {
        busy: Duration,
        starts: Arc<Mutex<Vec<tokio::time::Instant>>>,
        running: Arc<Mutex<(u32, u32)>>,
    }

    impl Check for Slow {
        fn attempt(&self) -> AttemptFuture<'_> {
            Box::pin(async move {
                self.starts
                    .lock()
                    .unwrap()
                    .push(tokio::time::Instant::now());
                {
                    let mut r = self.running.lock().unwrap();
                    r.0 += 1;
                    r.1 = r.1.max(r.0);
                }
                tokio::time::sleep(self.busy).await;
                self.running.lock().unwrap().0 -= 1;
                Ok(())
            })
        }
    }

    /// Runs one service with a check taking `busy` at `interval` for `for_`.
    async fn starts(interval: &str, busy: Duration, for_: Duration) -> (Vec<Duration>, u32) {
        let text = format!(
            "announcer: {{routes: [192.0.2.1/32]}}\nservices:\n  - name: s\n    check_interval: {interval}\n    checks: [{{kind: assigned_address, spec: {{ipv4: 127.0.0.1}}}}]\n"
        );
        let config = load_str(
            &text,
            Format::Yaml,
            Path::new("t.yaml"),
            Some(BackendKind::Exabgp),
        )
        .unwrap();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(Mutex::new((0, 0)));
        let service = PreparedService {
            config: Arc::new(config.services[0].clone()),
            checks: Arc::new([PreparedCheck {
                name: "slow".into(),
                group: String::new(),
                policy: AttemptPolicy {
                    tries: 1,
                    interval: Duration::from_millis(10),
                    timeout: Duration::from_secs(60),
                },
                check: Box::new(Slow {
                    busy,
                    starts: starts.clone(),
                    running: running.clone(),
                }),
            }]),
        };
        let (desired, _rx) = watch::channel(DesiredRoutes::empty());
        let (_commands_tx, commands) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let engine = tokio::spawn(run(
            config,
            vec![service],
            desired,
            commands,
            shutdown.clone(),
            EngineHooks::default(),
        ));
        let begin = tokio::time::Instant::now();
        tokio::time::sleep(for_).await;
        shutdown.cancel();
        engine.await.unwrap();
        let starts = starts.lock().unwrap().iter().map(|s| *s - begin).collect();
        let most_at_once = running.lock().unwrap().1;
        (starts, most_at_once)
    }

    fn gaps(starts: &[Duration]) -> Vec<u128> {
        starts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_start_at_once_then_every_interval_start_to_start() {
        let (starts, _) = starts(
            "1s",
            Duration::from_millis(300),
            Duration::from_millis(3500),
        )
        .await;
        // A lone service starts within its 1 ms startup window...
        assert!(starts[0] <= Duration::from_millis(1), "{starts:?}");
        // ...then start to start, not interval plus the 300 ms the check takes.
        assert_eq!(gaps(&starts), [1000, 1000, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_longer_than_the_interval_delays_the_next_and_never_overlaps() {
        let (starts, most_at_once) = starts(
            "1s",
            Duration::from_millis(1500),
            Duration::from_millis(4600),
        )
        .await;
        assert_eq!(gaps(&starts), [1500, 1500, 1500]);
        assert_eq!(most_at_once, 1);
    }
}
