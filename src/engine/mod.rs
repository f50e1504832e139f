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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use futures_util::FutureExt;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use self::core::{Core, DrainSource, Input, Output, ServiceView};
pub use crate::route::DesiredRoutes;
pub use health::ServiceState;
pub use routes::{RouteBook, Transition};
pub use runner::{
    CheckOutcome, PrepareError, PreparedService, RoundOutcome, panic_message, prepare, run_round,
};

use crate::config::Config;
use crate::metrics;
use crate::route::{AnnouncedRoutes, RouteSet};
use crate::status::{self, CheckStatus, StatusBoard, Verdict};

/// The answer to a command: what was done, or why not.
pub type Reply = oneshot::Sender<Result<String, String>>;

/// A request to the running engine.
pub enum EngineCommand {
    /// Apply a new, already loaded and prepared config: at once with
    /// `force`, else only if it withdraws no more than `max_withdraw`;
    /// with `dry_run`, only say what it would change.
    Reload {
        config: Box<Config>,
        prepared: Vec<PreparedService>,
        force: bool,
        dry_run: bool,
        reply: Option<Reply>,
    },
    /// Drain (`on`) or undrain the named services, or the node when none
    /// are named.
    Drain {
        services: Vec<String>,
        source: DrainSource,
        on: bool,
        reply: Option<Reply>,
    },
    /// Run a round of the named services (every service when none) now.
    CheckNow { services: Vec<String>, reply: Reply },
    /// A graceful shutdown: drain every service; `drained` fires once
    /// nothing is Draining any more.
    Shutdown { drained: oneshot::Sender<()> },
}

/// What a reload changes in the desired routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDiff {
    pub announce: Vec<(IpNet, String)>,
    pub withdraw: Vec<IpNet>,
    /// Announced before and after, differently (state or attributes).
    pub reannounce: Vec<(IpNet, String, String)>,
}

impl RouteDiff {
    pub fn between(before: &RouteSet, after: &RouteSet) -> RouteDiff {
        let mut diff = RouteDiff::default();
        for (route, how) in after {
            match before.get(route) {
                None => diff.announce.push((*route, how.to_string())),
                Some(old) if old != how => {
                    diff.reannounce
                        .push((*route, old.to_string(), how.to_string()))
                }
                Some(_) => {}
            }
        }
        diff.withdraw = before
            .keys()
            .filter(|r| !after.contains_key(r))
            .copied()
            .collect();
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty() && self.reannounce.is_empty()
    }

    /// One line per route: `+ P (how)`, `- P`, `~ P (old -> new)`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (route, how) in &self.announce {
            out.push_str(&format!("announce   {route} ({how})\n"));
        }
        for route in &self.withdraw {
            out.push_str(&format!("withdraw   {route}\n"));
        }
        for (route, old, new) in &self.reannounce {
            out.push_str(&format!("reannounce {route} ({old} -> {new})\n"));
        }
        if out.is_empty() {
            out.push_str("no route changes\n");
        }
        out
    }
}

/// Drains set through the control socket, as the state file keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedDrains {
    #[serde(default)]
    pub node: bool,
    #[serde(default)]
    pub services: Vec<String>,
}

impl SavedDrains {
    /// Reads the state file; a missing file is no drains.
    pub fn load(path: &std::path::Path) -> Result<SavedDrains, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a drain state file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedDrains::default()),
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    }

    /// Writes the state file whole (temporary file, then rename).
    pub fn save(&self, path: &std::path::Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))
    }
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
    /// The native backend's peers (BGP and BFD sessions), for the status board.
    pub peers: Option<watch::Receiver<crate::peers::PeerStatuses>>,
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
    control: watch::Sender<TaskControl>,
}

/// What the engine loop tells a running service task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TaskControl {
    /// Rounds every `fast_interval` instead of `check_interval`.
    fast: bool,
    /// Bumped to ask for a round now.
    run_now: u64,
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
    /// Where drains set over the control socket are kept.
    state_file: Option<PathBuf>,
    /// Fired by `ShutdownDrained`.
    shutdown_drained: Option<oneshot::Sender<()>>,
    /// What was last shown of each service (status board, metrics).
    shown: HashMap<String, ServiceView>,
}

impl Carrier {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Carries out the core's outputs; `decided_at` is when the inputs
    /// behind them happened (for the route change latency).
    fn carry_out(&mut self, core: &Core, outputs: Vec<Output>, decided_at: Instant) {
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
                        status.transition(&service, from.into(), to.into(), &reason);
                    }
                    self.show(core, &service);
                }
                Output::Pace { service, fast } => {
                    if let Some(running) = self.running.get(&service) {
                        running.control.send_modify(|c| c.fast = fast);
                    }
                }
                Output::CliDrains { node, services } => {
                    if let Some(path) = &self.state_file {
                        match (SavedDrains { node, services }).save(path) {
                            Ok(()) => tracing::debug!(file = %path.display(), "drains saved"),
                            Err(e) => tracing::error!("drains are not kept across restarts: {e}"),
                        }
                    }
                }
                Output::ShutdownDrained => {
                    if let Some(drained) = self.shutdown_drained.take() {
                        let _ = drained.send(());
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
                Output::Configured { .. } => {
                    let names: Vec<String> = self.prepared.keys().cloned().collect();
                    self.shown
                        .retain(|name, _| self.prepared.contains_key(name));
                    for service in &names {
                        self.show(core, service);
                    }
                }
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
        let (control, control_rx) = watch::channel(TaskControl::default());
        let handle = self.tasks.spawn(service_task(
            prepared,
            count,
            epoch,
            self.reports.clone(),
            control_rx,
        ));
        self.task_ids
            .insert(handle.id(), (service.to_string(), epoch));
        self.running.insert(
            service.to_string(),
            Running {
                epoch,
                task: handle,
                control,
            },
        );
    }

    /// Copies the core's view of `service` to the status board and
    /// metrics when it changed since it was last shown (called after every
    /// round: most rounds change nothing).
    fn show(&mut self, core: &Core, service: &str) {
        let Some(view) = core.view(service) else {
            return;
        };
        let previous = self.shown.get(service);
        if previous == Some(&view) {
            return;
        }
        if previous.map(|p| p.health.serving()) != Some(view.health.serving()) {
            metrics::service_up(service, view.health.serving());
        }
        if previous.map(|p| p.state) != Some(view.state) {
            // Before its first showing a service was set `unknown`.
            let from = previous.map_or(ServiceState::Unknown, |p| p.state);
            metrics::service_state(service, Some(from.as_str()), view.state.as_str());
        }
        let drained = !view.drained_by.is_empty();
        if previous.map(|p| (!p.drained_by.is_empty(), p.draining_until))
            != Some((drained, view.draining_until))
        {
            let ends = view
                .draining_until
                .map(|d| std::time::SystemTime::now() + d.saturating_sub(self.now()));
            metrics::service_drain(service, drained, ends);
        }
        let at = |until: Option<Duration>| until.map(|d| self.started.into_std() + d);
        if let Some(status) = &self.hooks.status {
            status.set_details(
                service,
                status::ServiceDetails {
                    reason: view.reason.clone(),
                    drained_by: view
                        .drained_by
                        .iter()
                        .map(|s| s.as_str().to_string())
                        .collect(),
                    draining_until: at(view.draining_until),
                    held_until: at(view.held_until),
                    rise_fall: view.progress.map(|p| status::RiseFall {
                        rounds: p.rounds,
                        needed: p.needed,
                        toward: p.toward.into(),
                    }),
                },
            );
        }
        self.shown.insert(service.to_string(), view);
    }

    /// Whether a report comes from the service's current task.
    fn current(&self, report: &RoundReport) -> bool {
        self.running
            .get(&report.service)
            .is_some_and(|r| r.epoch == report.epoch)
    }
}

/// How often maintenance files are looked for.
pub const MAINTENANCE_POLL: Duration = Duration::from_millis(250);

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
        metrics::service_state(&service.config.name, None, ServiceState::Unknown.as_str());
    }
    let mut announced = hooks.announced.take();
    let mut peers = hooks.peers.take();
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
        state_file: config.control.state_file.clone(),
        shutdown_drained: None,
        shown: HashMap::new(),
    };
    let mut maintenance = MaintenanceFiles::new(&config);
    let mut core = Core::new();
    let config = Arc::new(config);
    let outputs = core.handle(carrier.now(), Input::Configure(config.clone()));
    carrier.carry_out(&core, outputs, Instant::now());
    // Drains kept from the last run, before any route goes out.
    if let Some(path) = &carrier.state_file {
        match SavedDrains::load(path) {
            Ok(saved) => {
                let mut inputs = Vec::new();
                if saved.node {
                    inputs.push((None, true));
                }
                for service in saved.services {
                    if core.knows(&service) {
                        inputs.push((Some(service), true));
                    } else {
                        tracing::warn!(service = %service, file = %path.display(), "a drained service is no longer configured; dropping its drain");
                    }
                }
                for (service, on) in inputs {
                    let outputs = core.handle(
                        carrier.now(),
                        Input::Drain {
                            service,
                            source: DrainSource::Cli,
                            on,
                        },
                    );
                    carrier.carry_out(&core, outputs, Instant::now());
                }
            }
            Err(e) => {
                // An operator may have drained this node for maintenance:
                // not knowing is no reason to announce. Drain it until told.
                tracing::error!("{e}; draining the whole node until `anycastd undrain`");
                let outputs = core.handle(
                    carrier.now(),
                    Input::Drain {
                        service: None,
                        source: DrainSource::Cli,
                        on: true,
                    },
                );
                carrier.carry_out(&core, outputs, Instant::now());
            }
        }
    }
    maintenance.first_look().await;
    for (service, on) in maintenance.poll() {
        let outputs = core.handle(
            carrier.now(),
            Input::Drain {
                service,
                source: DrainSource::File,
                on,
            },
        );
        carrier.carry_out(&core, outputs, Instant::now());
    }
    let mut poll = tokio::time::interval(MAINTENANCE_POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        let deadline = core.next_deadline().map(|d| carrier.started + d);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = beat(&mut heartbeat) => {}
            _ = poll.tick(), if maintenance.any() => {
                for (service, on) in maintenance.poll() {
                    let outputs = core.handle(carrier.now(), Input::Drain { service, source: DrainSource::File, on });
                    carrier.carry_out(&core, outputs, Instant::now());
                }
            }
            changed = reported(&mut peers) => {
                match changed {
                    Some(peers) => {
                        if let Some(status) = &carrier.hooks.status {
                            status.set_peers(peers);
                        }
                    }
                    None => peers = None,
                }
            }
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
                let mut inputs = Vec::new();
                let mut rounds = Vec::new();
                let mut next = Some(report);
                while let Some(report) = next {
                    if carrier.current(&report) {
                        record_round(&report);
                        inputs.push(Input::Round {
                            service: report.service.clone(),
                            epoch: report.epoch,
                            level: report.outcome.level,
                            reason: report.outcome.failure_summary(),
                        });
                        rounds.push(report);
                    }
                    next = reports.try_recv().ok();
                }
                let outputs = core.handle_all(carrier.now(), inputs);
                if let Some(status) = &carrier.hooks.status {
                    for report in &rounds {
                        if let Some(state) = core.state(&report.service) {
                            status.record_round(
                                &report.service,
                                check_statuses(&report.outcome),
                                state.into(),
                            );
                        }
                    }
                }
                carrier.carry_out(&core, outputs, decided_at);
                for report in &rounds {
                    carrier.show(&core, &report.service);
                }
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
                    carrier.carry_out(&core, outputs, Instant::now());
                }
            }
            _ = sleep_until(deadline) => {
                let outputs = core.handle(carrier.now(), Input::Tick);
                carrier.carry_out(&core, outputs, Instant::now());
            }
            Some(command) = commands.recv() => match command {
                EngineCommand::Reload { config: new_config, prepared, force, dry_run, reply } => {
                    let new_config = Arc::new(*new_config);
                    let after = core.preview(carrier.now(), new_config.clone());
                    let diff = RouteDiff::between(core.desired(), &after);
                    let limit = new_config
                        .drain
                        .max_withdraw
                        .map(|m| (m, m.limit(core.desired().len())));
                    let answer = if dry_run {
                        Ok(diff.render())
                    } else if let Some((max, limit)) = limit.filter(|(_, l)| diff.withdraw.len() > *l && !force) {
                        let list: Vec<String> = diff.withdraw.iter().map(|r| r.to_string()).collect();
                        Err(format!(
                            "reload refused: it would withdraw {} route(s), more than max_withdraw {max} ({limit} of {} now); reload with --force to apply it anyway: {}",
                            diff.withdraw.len(),
                            core.desired().len(),
                            list.join(" ")
                        ))
                    } else {
                        apply_reload(&mut carrier, &mut core, &mut maintenance, new_config, prepared);
                        Ok(format!("configuration reloaded\n{}", diff.render()))
                    };
                    match (&answer, reply) {
                        (_, Some(reply)) => { let _ = reply.send(answer); }
                        (Err(why), None) => {
                            metrics::config_reload(false);
                            tracing::error!("{why}");
                        }
                        (Ok(_), None) => {}
                    }
                }
                EngineCommand::Drain { services, source, on, reply } => {
                    let unknown: Vec<&String> = services.iter().filter(|s| !core.knows(s)).collect();
                    let answer = if !unknown.is_empty() {
                        let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
                        Err(format!("no such service: {}", names.join(", ")))
                    } else {
                        let targets: Vec<Option<String>> = if services.is_empty() {
                            vec![None]
                        } else {
                            services.iter().cloned().map(Some).collect()
                        };
                        for service in targets {
                            let outputs = core.handle(carrier.now(), Input::Drain { service, source, on });
                            carrier.carry_out(&core, outputs, Instant::now());
                        }
                        Ok(drain_summary(&core, &carrier, &services, on))
                    };
                    if let Some(reply) = reply {
                        let _ = reply.send(answer);
                    }
                }
                EngineCommand::CheckNow { services, reply } => {
                    let unknown: Vec<&str> = services.iter().filter(|s| !core.knows(s)).map(|s| s.as_str()).collect();
                    let answer = if !unknown.is_empty() {
                        Err(format!("no such service: {}", unknown.join(", ")))
                    } else {
                        let mut started = 0;
                        for (name, running) in &carrier.running {
                            if services.is_empty() || services.contains(name) {
                                running.control.send_modify(|c| c.run_now += 1);
                                started += 1;
                            }
                        }
                        Ok(format!("a round started for {started} service(s)"))
                    };
                    let _ = reply.send(answer);
                }
                EngineCommand::Shutdown { drained } => {
                    carrier.shutdown_drained = Some(drained);
                    let outputs = core.handle(carrier.now(), Input::Drain { service: None, source: DrainSource::Shutdown, on: true });
                    carrier.carry_out(&core, outputs, Instant::now());
                }
            },
        }
    }
    carrier.tasks.shutdown().await;
}

/// Applies a reload the caller decided to apply.
fn apply_reload(
    carrier: &mut Carrier,
    core: &mut Core,
    maintenance: &mut MaintenanceFiles,
    new_config: Arc<Config>,
    prepared: Vec<PreparedService>,
) {
    if let Some(status) = &carrier.hooks.status {
        status.apply_config(&new_config);
    }
    carrier.state_file = new_config.control.state_file.clone();
    let names: HashSet<String> = prepared.iter().map(|p| p.config.name.clone()).collect();
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
    let source = new_config.source.clone();
    let mut files = MaintenanceFiles::new(&new_config);
    let undrains = files.carry_from(maintenance);
    *maintenance = files;
    let outputs = core.handle(carrier.now(), Input::Configure(new_config));
    for output in &outputs {
        if let Output::Configured {
            services,
            unchanged,
            removed,
        } = output
        {
            tracing::info!(
                file = %source.display(),
                services,
                unchanged,
                removed,
                "configuration reloaded"
            );
        }
    }
    carrier.carry_out(core, outputs, Instant::now());
    // Files the new config no longer names lift their drains; files it
    // names keep what was seen of them until the new watcher looks.
    for (service, on) in undrains.into_iter().chain(maintenance.poll()) {
        let outputs = core.handle(
            carrier.now(),
            Input::Drain {
                service,
                source: DrainSource::File,
                on,
            },
        );
        carrier.carry_out(core, outputs, Instant::now());
    }
}

/// What a drain or undrain did, one line per service.
fn drain_summary(core: &Core, carrier: &Carrier, services: &[String], on: bool) -> String {
    let names: Vec<String> = if services.is_empty() {
        let mut all: Vec<String> = carrier.prepared.keys().cloned().collect();
        all.sort();
        all
    } else {
        services.to_vec()
    };
    let mut out = String::from(match (on, services.is_empty()) {
        (true, true) => "node drained\n",
        (false, true) => "node undrained\n",
        (true, false) => "drained\n",
        (false, false) => "undrained\n",
    });
    for name in names {
        if let Some(view) = core.view(&name) {
            let mut line = format!("{name}: {}", view.state.as_str());
            if !view.reason.is_empty() {
                line.push_str(&format!(" ({})", view.reason));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// A look at the maintenance files older than this (the watcher thread is
/// stuck, say in a stat on a hung mount) is no answer: every file counts as
/// present, the drained side.
const MAINTENANCE_STALE: Duration = Duration::from_secs(1);

/// When the watcher thread last looked, and which files existed.
type Looked = Option<(Instant, Vec<bool>)>;

/// The maintenance files of a config, and which of them existed when last
/// looked at. The looking (a stat per file) is done by a thread of its own,
/// so a file on a hung mount can stall that thread but never the engine
/// loop and with it the checks.
struct MaintenanceFiles {
    /// `None` for the node's file, else the service's name.
    files: Vec<(Option<String>, PathBuf)>,
    present: BTreeSet<usize>,
    /// From the watcher; `None` without files.
    looked: Option<watch::Receiver<Looked>>,
    created: Instant,
    /// Whether "no fresh look" has been logged (once per episode).
    stale_logged: bool,
}

impl MaintenanceFiles {
    fn new(config: &Config) -> MaintenanceFiles {
        let mut files = Vec::new();
        if let Some(path) = &config.drain.maintenance_file {
            files.push((None, path.clone()));
        }
        for service in &config.services {
            if let Some(path) = &service.maintenance_file {
                files.push((Some(service.name.clone()), path.clone()));
            }
        }
        let looked = (!files.is_empty())
            .then(|| spawn_maintenance_watcher(files.iter().map(|(_, p)| p.clone()).collect()));
        MaintenanceFiles::watching(files, looked)
    }

    fn watching(
        files: Vec<(Option<String>, PathBuf)>,
        looked: Option<watch::Receiver<Looked>>,
    ) -> MaintenanceFiles {
        MaintenanceFiles {
            files,
            present: BTreeSet::new(),
            looked,
            created: Instant::now(),
            stale_logged: false,
        }
    }

    fn any(&self) -> bool {
        !self.files.is_empty()
    }

    /// Takes over what `old` saw of the files both configs name; returns
    /// the undrains of files `old` saw that this config no longer names.
    fn carry_from(&mut self, old: &MaintenanceFiles) -> Vec<(Option<String>, bool)> {
        let mut undrains = Vec::new();
        for &at in &old.present {
            let entry = &old.files[at];
            match self.files.iter().position(|f| f == entry) {
                Some(here) => {
                    self.present.insert(here);
                }
                None => undrains.push((entry.0.clone(), false)),
            }
        }
        undrains
    }

    /// Waits (at most [`MAINTENANCE_STALE`]) for the watcher's first look.
    async fn first_look(&mut self) {
        if let Some(looked) = &mut self.looked {
            let _ = tokio::time::timeout(MAINTENANCE_STALE, looked.wait_for(Option::is_some)).await;
        }
    }

    /// The watcher's latest look; returns the drains that changed.
    fn poll(&mut self) -> Vec<(Option<String>, bool)> {
        let latest = self.looked.as_ref().and_then(|l| l.borrow().clone());
        let seen = match latest {
            Some((at, present)) if at.elapsed() < MAINTENANCE_STALE => {
                if std::mem::take(&mut self.stale_logged) {
                    tracing::info!("maintenance files can be looked at again");
                }
                present
            }
            None if self.created.elapsed() < MAINTENANCE_STALE => return Vec::new(),
            _ => {
                if !std::mem::replace(&mut self.stale_logged, true) {
                    tracing::error!(
                        "maintenance files could not be looked at for {}: counting them as present (drained)",
                        crate::config::format_duration(MAINTENANCE_STALE)
                    );
                }
                vec![true; self.files.len()]
            }
        };
        let mut changes = Vec::new();
        for (at, (service, path)) in self.files.iter().enumerate() {
            let exists = seen.get(at).copied().unwrap_or(true);
            if exists != self.present.contains(&at) {
                if exists {
                    self.present.insert(at);
                    tracing::warn!(file = %path.display(), service = service.as_deref().unwrap_or("(every service)"), "maintenance file present: draining");
                } else {
                    self.present.remove(&at);
                    tracing::warn!(file = %path.display(), service = service.as_deref().unwrap_or("(every service)"), "maintenance file gone: undraining");
                }
                changes.push((service.clone(), exists));
            }
        }
        changes
    }
}

/// A thread that stats `paths` every [`MAINTENANCE_POLL`] and reports;
/// it ends when the receiver is dropped (a reload, the engine stopping).
fn spawn_maintenance_watcher(paths: Vec<PathBuf>) -> watch::Receiver<Looked> {
    let (tx, rx) = watch::channel(None);
    let spawned = std::thread::Builder::new()
        .name("anycastd-maint".into())
        .spawn(move || {
            loop {
                // A file that cannot be looked at (permissions, I/O) may be
                // there: drained, the safe side.
                let present = paths
                    .iter()
                    .map(|p| p.try_exists().unwrap_or(true))
                    .collect();
                if tx.send(Some((Instant::now(), present))).is_err() {
                    return;
                }
                std::thread::sleep(MAINTENANCE_POLL);
            }
        });
    if let Err(e) = spawned {
        // Without looks the files count as present: drained.
        tracing::error!(error = %e, "cannot start the maintenance file watcher");
    }
    rx
}

/// One service's rounds, every `check_interval` start to start (every
/// `fast_interval` while the engine asks for it, and at once when asked),
/// reported to the engine loop until it is aborted.
async fn service_task(
    service: PreparedService,
    services: usize,
    epoch: u64,
    reports: mpsc::Sender<RoundReport>,
    mut control: watch::Receiver<TaskControl>,
) {
    let normal = service.config.check_interval;
    let fast = service.config.fast_interval.unwrap_or(normal);
    let start =
        tokio::time::Instant::now() + schedule::offset(&service.config.name, normal, services);
    let mut ticker = tokio::time::interval_at(start, normal);
    // A round longer than the interval delays the next; rounds never overlap.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen = *control.borrow_and_update();
    let mut control_open = true;
    // Checks that hear when their verdict may have changed (kernel events):
    // a wakeup runs a round at once; the ticker stays the backstop.
    let wakeups: Vec<Arc<Notify>> = service
        .checks
        .iter()
        .filter_map(|check| check.check.wakeups())
        .collect();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = woken(&wakeups) => {
                // A burst of events (an address and its routes, a link and
                // its addresses) is one round: wait a moment, then forget
                // the wakeups that came meanwhile. Any after this point runs
                // one more round once this one ends.
                tokio::time::sleep(WAKEUP_DEBOUNCE).await;
                for wakeup in &wakeups {
                    let _ = wakeup.notified().now_or_never();
                }
                let period = if seen.fast { fast } else { normal };
                ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            }
            changed = control.changed(), if control_open => {
                if changed.is_err() {
                    control_open = false;
                    continue;
                }
                let now = *control.borrow_and_update();
                let run_now = now.run_now != seen.run_now;
                let repace = now.fast != seen.fast;
                seen = now;
                let period = if now.fast { fast } else { normal };
                if !run_now {
                    if repace {
                        ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    }
                    continue;
                }
                // A round now; the next one a period after it.
                ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            }
        }
        let outcome = run_round(&service).await;
        for (check, prepared) in outcome.checks.iter().zip(service.checks.iter()) {
            prepared.gauges.record(
                &service.config.name,
                &check.name,
                check.passed,
                check.duration.as_secs_f64(),
            );
        }
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

/// How long a wakeup waits for the rest of its burst before the round.
const WAKEUP_DEBOUNCE: Duration = Duration::from_millis(2);

/// Resolves when any of `wakeups` is notified; never without any.
async fn woken(wakeups: &[Arc<Notify>]) {
    if wakeups.is_empty() {
        return std::future::pending().await;
    }
    futures_util::future::select_all(wakeups.iter().map(|w| Box::pin(w.notified()))).await;
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
            history: status::History::default(),
        })
        .collect()
}

impl From<ServiceState> for status::State {
    fn from(state: ServiceState) -> status::State {
        match state {
            ServiceState::Unknown => status::State::Unknown,
            ServiceState::Up => status::State::Up,
            ServiceState::Degraded => status::State::Degraded,
            ServiceState::Draining => status::State::Draining,
            ServiceState::Drained => status::State::Drained,
            ServiceState::Down => status::State::Down,
        }
    }
}

fn record_round(report: &RoundReport) {
    for check in &report.outcome.checks {
        if !check.passed {
            tracing::debug!(service = %report.service, check = %check.name, reason = %check.reason, "check failed");
        }
    }
}

fn log_transition(service: &str, from: ServiceState, to: ServiceState, reason: &str) {
    metrics::service_transition(service, to.as_str());
    let message = format!("service is {}", to.as_str());
    match to {
        ServiceState::Up => tracing::info!(service = %service, from = from.as_str(), "{message}"),
        _ => {
            tracing::warn!(service = %service, from = from.as_str(), reason = %reason, "{message}")
        }
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
async fn reported<T: Clone>(announced: &mut Option<watch::Receiver<T>>) -> Option<T> {
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
        wakeup: Option<Arc<Notify>>,
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

        fn wakeups(&self) -> Option<Arc<Notify>> {
            self.wakeup.clone()
        }
    }

    /// Runs one service with a check taking `busy` at `interval` for `for_`.
    async fn starts(interval: &str, busy: Duration, for_: Duration) -> (Vec<Duration>, u32) {
        woken_starts(interval, busy, for_, &[]).await
    }

    /// Like [`starts`], with the check's wakeup notified at each of `pokes`
    /// (from the start; repeats make a burst).
    async fn woken_starts(
        interval: &str,
        busy: Duration,
        for_: Duration,
        pokes: &[Duration],
    ) -> (Vec<Duration>, u32) {
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
        let wakeup = Arc::new(Notify::new());
        let service = PreparedService {
            config: Arc::new(config.services[0].clone()),
            checks: Arc::new([PreparedCheck {
                name: "slow".into(),
                group: String::new(),
                degrades: false,
                gauges: Default::default(),
                policy: AttemptPolicy {
                    tries: 1,
                    interval: Duration::from_millis(10),
                    timeout: Duration::from_secs(60),
                },
                check: Box::new(Slow {
                    busy,
                    starts: starts.clone(),
                    running: running.clone(),
                    wakeup: Some(wakeup.clone()),
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
        for &poke in pokes {
            tokio::time::sleep_until(begin + poke).await;
            wakeup.notify_one();
        }
        tokio::time::sleep_until(begin + for_).await;
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

    #[test]
    fn a_stale_look_at_the_maintenance_files_counts_them_present() {
        let (tx, rx) = watch::channel(None);
        let files = vec![
            (Some("a".to_string()), PathBuf::from("/m/a")),
            (Some("b".to_string()), PathBuf::from("/m/b")),
        ];
        let mut maintenance = MaintenanceFiles::watching(files.clone(), Some(rx));
        // No look yet, and not for long: nothing decided.
        assert!(maintenance.poll().is_empty());
        tx.send(Some((Instant::now(), vec![false, true]))).unwrap();
        assert_eq!(maintenance.poll(), [(Some("b".to_string()), true)]);
        // The watcher is stuck (its last look is old): every file is there.
        let old = Instant::now() - 2 * MAINTENANCE_STALE;
        tx.send(Some((old, vec![false, false]))).unwrap();
        assert_eq!(maintenance.poll(), [(Some("a".to_string()), true)]);
        // A fresh look counts again.
        tx.send(Some((Instant::now(), vec![false, false]))).unwrap();
        assert_eq!(
            maintenance.poll(),
            [
                (Some("a".to_string()), false),
                (Some("b".to_string()), false)
            ]
        );
        // A reload keeps what was seen of the files both configs name and
        // lifts the drains of the others.
        tx.send(Some((Instant::now(), vec![true, true]))).unwrap();
        maintenance.poll();
        let mut reloaded = MaintenanceFiles::watching(files[..1].to_vec(), None);
        assert_eq!(
            reloaded.carry_from(&maintenance),
            [(Some("b".to_string()), false)]
        );
        assert!(reloaded.present.contains(&0));
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

    #[tokio::test(start_paused = true)]
    async fn a_wakeup_runs_a_round_at_once_then_the_interval_restarts() {
        let ms = Duration::from_millis;
        // 10 s interval; a wakeup at 3 s; a burst of three at 5 s.
        let (starts, most_at_once) = woken_starts(
            "10s",
            ms(1),
            ms(16_000),
            &[ms(3000), ms(5000), ms(5000), ms(5000)],
        )
        .await;
        let at: Vec<u128> = starts.iter().map(|s| s.as_millis()).collect();
        // At once (debounced by 2 ms), a burst is one round, and the next
        // periodic round is an interval after the last woken one.
        assert_eq!(at, [1, 3002, 5002, 15002], "{starts:?}");
        assert_eq!(most_at_once, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wakeup_during_a_round_runs_one_more_after_it_never_overlapping() {
        let ms = Duration::from_millis;
        let (starts, most_at_once) =
            woken_starts("10s", ms(500), ms(3000), &[ms(1000), ms(1200), ms(1300)]).await;
        let at: Vec<u128> = starts.iter().map(|s| s.as_millis()).collect();
        assert_eq!(at, [1, 1002, 1504], "{starts:?}");
        assert_eq!(most_at_once, 1);
    }
}
