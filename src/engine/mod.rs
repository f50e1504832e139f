//! The engine owns time and health: one task per service runs its checks
//! every `check_interval` (start to start), and one core loop owns every
//! service's state, turns verdicts into the desired route set and publishes
//! it on a watch channel for the backend.
//!
//! ```text
//!  service task ─┐ RoundReport
//!  service task ─┼──────────────► core loop (RouteBook) ──watch──► backend
//!  service task ─┘                    ▲
//!                         Reload ─────┘ (SIGHUP, from main)
//! ```
//!
//! Besides the desired routes, the core loop can report to the rest of the
//! process through [`EngineHooks`]: the status board behind `GET /status`,
//! a one-shot signal once every service has its first verdict (systemd's
//! READY=1), and a heartbeat called from the loop itself (systemd's
//! watchdog), so a stuck loop stops beating.
//!
//! Each service task is owned by its entry in the core loop: dropping the
//! entry (service removed or changed on reload, or shutdown) aborts it.

pub mod health;
pub mod routes;
pub mod runner;
pub mod schedule;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use health::ServiceState;
pub use routes::{DesiredRoutes, RouteBook, Transition};
pub use runner::{CheckOutcome, PrepareError, PreparedService, RoundOutcome, prepare, run_round};

use crate::config::{Config, ServiceConfig};
use crate::metrics;
use crate::status::StatusBoard;

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

/// Aborts the task when dropped, so a task never outlives its owner.
struct OwnedTask(JoinHandle<()>);

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct ServiceEntry {
    config: Arc<ServiceConfig>,
    epoch: u64,
    _task: OwnedTask,
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
    let mut book = RouteBook::new(&config);
    if let Some(status) = &hooks.status {
        status.apply_config(&config);
    }
    // Services still waiting for their first round, for `hooks.ready`.
    let mut first_round_pending: HashSet<String> =
        config.services.iter().map(|s| s.name.clone()).collect();
    let mut heartbeat = hooks.heartbeat.take().map(|h| {
        // `interval` panics on zero.
        let mut ticker = tokio::time::interval(h.period.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        (ticker, h)
    });
    let mut entries: HashMap<String, ServiceEntry> = HashMap::new();
    let mut next_epoch = 0u64;
    let count = services.len();
    for service in services {
        metrics::service_up(&service.config.name, false);
        next_epoch += 1;
        let entry = spawn_service(service, count, next_epoch, report_tx.clone());
        entries.insert(entry.config.name.clone(), entry);
    }

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = beat(&mut heartbeat) => {}
            Some(report) = reports.recv() => {
                // Take every report already waiting, then publish once: many
                // services flipping together become one change for the backend.
                let decided_at = report.outcome.finished_at;
                let mut transitioned = false;
                let mut next = Some(report);
                while let Some(report) = next {
                    if entries.get(&report.service).map(|e| e.epoch) == Some(report.epoch) {
                        record_round(&report);
                        if let Some(transition) = book.observe(&report.service, report.outcome.passed) {
                            log_transition(&transition, &report.outcome);
                            transitioned = true;
                        }
                        if let (Some(status), Some(state)) = (&hooks.status, book.state(&report.service)) {
                            status.record_round(&report.service, &report.outcome, state);
                        }
                        first_round_pending.remove(&report.service);
                    }
                    next = reports.try_recv().ok();
                }
                // Only a state change can change the routes: a steady round
                // costs no walk over every route.
                if transitioned {
                    publish(&book, &desired, decided_at, hooks.status.as_ref());
                }
                signal_ready(&mut hooks.ready, &first_round_pending);
            }
            Some(command) = commands.recv() => match command {
                EngineCommand::Reload(new_config, prepared) => {
                    let mut kept = 0;
                    let mut fresh = HashMap::new();
                    let count = prepared.len();
                    for service in prepared {
                        let name = service.config.name.clone();
                        match entries.remove(&name) {
                            Some(entry) if entry.config == service.config => {
                                kept += 1;
                                fresh.insert(name, entry);
                            }
                            _ => {
                                next_epoch += 1;
                                fresh.insert(
                                    name,
                                    spawn_service(service, count, next_epoch, report_tx.clone()),
                                );
                            }
                        }
                    }
                    // Whatever is left in `entries` was removed; dropping aborts it.
                    let removed = entries.len();
                    entries = fresh;
                    book.apply_config(&new_config);
                    if let Some(status) = &hooks.status {
                        status.apply_config(&new_config);
                    }
                    first_round_pending.retain(|name| entries.contains_key(name));
                    tracing::info!(
                        file = %new_config.source.display(),
                        services = entries.len(),
                        unchanged = kept,
                        removed,
                        "configuration reloaded"
                    );
                    publish(&book, &desired, Instant::now(), hooks.status.as_ref());
                    signal_ready(&mut hooks.ready, &first_round_pending);
                }
            },
        }
    }
    drop(entries);
}

fn spawn_service(
    service: PreparedService,
    services: usize,
    epoch: u64,
    reports: mpsc::Sender<RoundReport>,
) -> ServiceEntry {
    let config = service.config.clone();
    let task = tokio::spawn(async move {
        let interval = service.config.check_interval;
        let start = tokio::time::Instant::now()
            + schedule::offset(&service.config.name, interval, services);
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
                return;
            }
        }
    });
    ServiceEntry {
        config,
        epoch,
        _task: OwnedTask(task),
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

fn log_transition(transition: &Transition, outcome: &RoundOutcome) {
    metrics::service_up(&transition.service, transition.to == ServiceState::Up);
    metrics::service_transition(&transition.service, transition.to.as_str());
    match transition.to {
        ServiceState::Up => tracing::info!(
            service = %transition.service,
            from = transition.from.as_str(),
            "service is up"
        ),
        _ => tracing::warn!(
            service = %transition.service,
            from = transition.from.as_str(),
            reason = %outcome.failure_summary(),
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

/// Fires `ready` once no service is waiting for its first round.
fn signal_ready(ready: &mut Option<oneshot::Sender<()>>, pending: &HashSet<String>) {
    if pending.is_empty()
        && let Some(ready) = ready.take()
    {
        let _ = ready.send(());
    }
}

/// Publishes the desired set if it changed; `at` is when the change was decided.
fn publish(
    book: &RouteBook,
    desired: &watch::Sender<DesiredRoutes>,
    at: Instant,
    status: Option<&StatusBoard>,
) {
    let routes = book.desired();
    if let Some(status) = status {
        status.set_desired(&routes);
    }
    desired.send_if_modified(|current| {
        if current.routes == routes {
            return false;
        }
        metrics::routes_desired(routes.len());
        *current = DesiredRoutes {
            routes,
            changed_at: Some(at),
        };
        true
    });
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
            checks: vec![PreparedCheck {
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
            }],
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
