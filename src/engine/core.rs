//! The engine's one owner of state, free of I/O. The engine loop feeds it
//! [`Input`]s (finished rounds, timer ticks, reloads, service tasks that
//! ended) with the time they happened, and carries out the [`Output`]s it
//! returns (start or stop service tasks, publish the desired routes, log a
//! transition, tell systemd it is ready).
//!
//! Time is a [`Duration`] since the engine started, so a recorded run
//! replays exactly: `tests/core_replay.rs` feeds the inputs of
//! `tests/replay/*.in.jsonl` and compares the outputs with golden files.
//!
//! It fails closed: a service whose last verdict is older than its
//! deadline ([`stale_after`]) is Down at once ("stale"), whatever rise/fall
//! say, and its task is restarted; so is a service whose task ended.
//!
//! A service's state is its health (rise/fall over its rounds), unless an
//! operator drained it (a maintenance file, `anycastd drain`, or a
//! graceful shutdown): a drained service that announces turns Draining
//! (announced with GRACEFUL_SHUTDOWN and its draining profile) for
//! `drain_time`, then Drained (withdrawn). A service Up again after being
//! Down stays Down until it has been Up for `announce_delay`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::health::{Level, ServiceState};
use super::routes::RouteBook;
use crate::checks::AttemptPolicy;
use crate::config::{Config, ServiceConfig, format_duration};
use crate::route::RouteSet;

/// Scheduling slack on top of a service's own worst case before its
/// verdict counts as stale: a busy runtime may start a round late.
pub const STALE_SLACK: Duration = Duration::from_secs(1);

/// What happened, as the engine loop tells the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// Load a config: the first one at start, then each reload.
    Configure(Arc<Config>),
    /// A service task finished a round. `epoch` says which task it was.
    Round {
        service: String,
        epoch: u64,
        level: Level,
        /// The failing checks' reasons in one line; empty when all passed.
        reason: String,
    },
    /// An operator drains (`on`) or undrains one service, or the whole
    /// node (`service: None`), through `source`.
    Drain {
        service: Option<String>,
        source: DrainSource,
        on: bool,
    },
    /// A service task ended (it never should): `panic` holds its message.
    TaskEnded {
        service: String,
        epoch: u64,
        panic: Option<String>,
    },
    /// Time passed; sent at [`Core::next_deadline`].
    Tick,
}

/// Who drained a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainSource {
    /// A maintenance file exists.
    File,
    /// `anycastd drain` over the control socket (kept in the state file).
    Cli,
    /// SIGTERM with `graceful_shutdown`.
    Shutdown,
}

impl DrainSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainSource::File => "file",
            DrainSource::Cli => "cli",
            DrainSource::Shutdown => "shutdown",
        }
    }
}

/// What the engine loop must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Start the service's task as `epoch`, stopping any earlier one.
    Spawn { service: String, epoch: u64 },
    /// Stop a removed service's task.
    Stop { service: String },
    /// A service changed state; `reason` says why when it is not Up.
    Transition {
        service: String,
        from: ServiceState,
        to: ServiceState,
        reason: String,
    },
    /// The desired route set changed to this.
    Publish { routes: Arc<RouteSet> },
    /// Run the service's rounds every `fast_interval` (`fast`) or every
    /// `check_interval` again.
    Pace { service: String, fast: bool },
    /// The drains set through the control socket changed: keep them.
    CliDrains { node: bool, services: Vec<String> },
    /// After a graceful shutdown's drain: nothing is Draining any more.
    ShutdownDrained,
    /// A config was applied: how many services, how many kept their task.
    Configured {
        services: usize,
        unchanged: usize,
        removed: usize,
    },
    /// Every service has its first verdict (sent once).
    Ready,
}

/// How long a service may go without a verdict before it is stale: the
/// longest a round can take (every check's tries, timeouts and pauses),
/// after the start-to-start interval or the previous round, whichever is
/// later, plus [`STALE_SLACK`].
pub fn stale_after(service: &ServiceConfig) -> Duration {
    let round = service
        .checks
        .iter()
        .map(|check| AttemptPolicy::for_spec(&check.spec).worst_case())
        .max()
        .unwrap_or(Duration::ZERO);
    service
        .check_interval
        .max(round)
        .saturating_add(round)
        .saturating_add(STALE_SLACK)
}

/// One service as the core tracks it.
#[derive(Debug, Clone)]
struct Tracked {
    config: ServiceConfig,
    /// The task whose rounds count.
    epoch: u64,
    stale_after: Duration,
    /// When the last verdict came, or the task was (re)started.
    last_seen: Duration,
    /// Has had a verdict (or was declared stale): counts for readiness.
    decided: bool,
    /// Who drained this service (the node's drains apply too).
    drains: BTreeSet<DrainSource>,
    /// Whether it was drained at the last refresh.
    was_drained: bool,
    /// While draining: when its routes are withdrawn.
    draining_until: Option<Duration>,
    /// After Down then Up: when its routes may be announced.
    held_until: Option<Duration>,
    /// Whether its task runs at `fast_interval`.
    fast: bool,
    /// The failing checks' reasons of its last failing round (or why it
    /// was taken Down).
    reason: String,
    /// Why it is in its state now, as shown (drained by…, a delay).
    shown_reason: String,
}

impl Tracked {
    fn new(config: ServiceConfig, epoch: u64, now: Duration, decided: bool) -> Tracked {
        Tracked {
            stale_after: stale_after(&config),
            config,
            epoch,
            last_seen: now,
            decided,
            drains: BTreeSet::new(),
            was_drained: false,
            draining_until: None,
            held_until: None,
            fast: false,
            reason: String::new(),
            shown_reason: String::new(),
        }
    }
}

/// The engine's state: every service's health and the desired routes.
/// `Clone` so a reload can be tried on a copy (`anycastd routes --diff`).
#[derive(Debug, Default, Clone)]
pub struct Core {
    book: RouteBook,
    services: BTreeMap<String, Tracked>,
    next_epoch: u64,
    desired: Arc<RouteSet>,
    ready_sent: bool,
    /// Drains of the whole node.
    node_drains: BTreeSet<DrainSource>,
    /// A graceful shutdown waits for the drains: `ShutdownDrained` sent?
    shutdown_drained_sent: bool,
    /// Something changed that may change the route set.
    dirty: bool,
}

/// One service as status pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceView {
    pub state: ServiceState,
    /// Rise/fall's verdict, whatever the operator decided.
    pub health: ServiceState,
    pub reason: String,
    /// Who drained it (its own drains and the node's), sorted.
    pub drained_by: Vec<DrainSource>,
    /// When (since the core started) a Draining service is withdrawn.
    pub draining_until: Option<Duration>,
    /// When (since the core started) a service held by `announce_delay`
    /// is announced.
    pub held_until: Option<Duration>,
    /// Rise or fall under way, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<super::health::Progress>,
}

impl Core {
    pub fn new() -> Core {
        Core::default()
    }

    /// The service's state, if it is configured.
    pub fn state(&self, service: &str) -> Option<ServiceState> {
        self.book.state(service)
    }

    /// Whether `service` is configured.
    pub fn knows(&self, service: &str) -> bool {
        self.services.contains_key(service)
    }

    /// The service as status pages show it.
    pub fn view(&self, service: &str) -> Option<ServiceView> {
        let tracked = self.services.get(service)?;
        Some(ServiceView {
            state: self.book.state(service)?,
            health: self.book.health(service)?,
            reason: tracked.shown_reason.clone(),
            drained_by: tracked.drains.union(&self.node_drains).copied().collect(),
            draining_until: tracked.draining_until,
            held_until: tracked.held_until,
            progress: self.book.progress(service),
        })
    }

    /// The routes published last.
    pub fn desired(&self) -> &Arc<RouteSet> {
        &self.desired
    }

    /// What the routes would be right after loading `config`, without
    /// loading it.
    pub fn preview(&self, now: Duration, config: Arc<Config>) -> Arc<RouteSet> {
        let mut copy = self.clone();
        copy.handle(now, Input::Configure(config));
        copy.desired
    }

    /// When the next [`Input::Tick`] is due: the earliest stale deadline,
    /// drain end or announce delay.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.services
            .values()
            .flat_map(|s| {
                [
                    Some(s.last_seen.saturating_add(s.stale_after)),
                    s.draining_until,
                    s.held_until,
                ]
            })
            .flatten()
            .min()
    }

    /// Feeds one input that happened at `now`; returns what to do.
    pub fn handle(&mut self, now: Duration, input: Input) -> Vec<Output> {
        self.handle_all(now, [input])
    }

    /// Feeds inputs that happened together (a batch of rounds) at `now`:
    /// what each changes, then one `Publish` for all of them. Working out
    /// the route set once per batch, not once per round, keeps a start of
    /// 1,000 services from building (and holding) 1,000 sets.
    pub fn handle_all(
        &mut self,
        now: Duration,
        inputs: impl IntoIterator<Item = Input>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        for input in inputs {
            out.extend(self.apply(now, input));
        }
        if std::mem::take(&mut self.dirty) {
            self.publish(&mut out);
        }
        self.check_ready(&mut out);
        self.check_shutdown_drained(&mut out);
        out
    }

    /// One input's effects, the route set only marked for publishing.
    fn apply(&mut self, now: Duration, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Configure(config) => self.configure(now, &config, &mut out),
            Input::Round {
                service,
                epoch,
                level,
                reason,
            } => {
                let Some(tracked) = self.services.get_mut(&service) else {
                    return out;
                };
                if tracked.epoch != epoch {
                    return out;
                }
                tracked.last_seen = now;
                tracked.decided = true;
                let fast = tracked.config.fast_interval.is_some();
                let health = self.book.observe(&service, level);
                if let Some(t) = &health {
                    self.health_changed(now, &service, t.from, t.to);
                }
                let tracked = self.services.get_mut(&service).expect("checked above");
                if health.is_some() || level != Level::Passing {
                    // The latest reason for the state it is in or heading to.
                    tracked.reason = reason;
                }
                let fast = fast && self.book.in_progress(&service);
                if fast != tracked.fast {
                    tracked.fast = fast;
                    out.push(Output::Pace {
                        service: service.clone(),
                        fast,
                    });
                }
                if self.refresh(now, &service, &mut out) {
                    self.dirty = true;
                }
            }
            Input::Drain {
                service,
                source,
                on,
            } => {
                let cli_before = self.cli_drains();
                let changed = match &service {
                    None => {
                        if on {
                            self.node_drains.insert(source)
                        } else {
                            self.node_drains.remove(&source)
                        }
                    }
                    Some(name) => match self.services.get_mut(name) {
                        Some(t) if on => t.drains.insert(source),
                        Some(t) => t.drains.remove(&source),
                        None => false,
                    },
                };
                if changed {
                    let names: Vec<String> = match service {
                        None => self.services.keys().cloned().collect(),
                        Some(name) => vec![name],
                    };
                    let mut any = false;
                    for name in &names {
                        any |= self.refresh(now, name, &mut out);
                    }
                    if any {
                        self.dirty = true;
                    }
                }
                let cli_after = self.cli_drains();
                if cli_after != cli_before {
                    out.push(Output::CliDrains {
                        node: cli_after.0,
                        services: cli_after.1,
                    });
                }
            }
            Input::TaskEnded {
                service,
                epoch,
                panic,
            } => {
                if self
                    .services
                    .get(&service)
                    .is_some_and(|s| s.epoch == epoch)
                {
                    let reason = match panic {
                        Some(message) => format!("service task panicked: {message}"),
                        None => "service task ended".to_string(),
                    };
                    self.fail_closed(now, &service, reason, &mut out);
                    self.dirty = true;
                }
            }
            Input::Tick => {
                let stale: Vec<(String, Duration)> = self
                    .services
                    .iter()
                    .filter(|(_, s)| now >= s.last_seen.saturating_add(s.stale_after))
                    .map(|(name, s)| (name.clone(), now.saturating_sub(s.last_seen)))
                    .collect();
                for (service, silent) in &stale {
                    let reason = format!("stale: no verdict for {}", format_duration(*silent));
                    self.fail_closed(now, service, reason, &mut out);
                }
                let timers: Vec<String> = self
                    .services
                    .iter()
                    .filter(|(_, s)| {
                        s.draining_until.is_some_and(|u| now >= u)
                            || s.held_until.is_some_and(|u| now >= u)
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                let mut any = !stale.is_empty();
                for service in &timers {
                    any |= self.refresh(now, service, &mut out);
                }
                if any {
                    self.dirty = true;
                }
            }
        }
        out
    }

    /// The drains set through the control socket: the node's, and the
    /// services drained on their own, sorted.
    fn cli_drains(&self) -> (bool, Vec<String>) {
        (
            self.node_drains.contains(&DrainSource::Cli),
            self.services
                .iter()
                .filter(|(_, t)| t.drains.contains(&DrainSource::Cli))
                .map(|(name, _)| name.clone())
                .collect(),
        )
    }

    /// Starts or ends the announce delay as health changes.
    fn health_changed(
        &mut self,
        now: Duration,
        service: &str,
        from: ServiceState,
        to: ServiceState,
    ) {
        let Some(tracked) = self.services.get_mut(service) else {
            return;
        };
        if !to.serving() {
            tracked.held_until = None;
        } else if from == ServiceState::Down && !tracked.config.announce_delay.is_zero() {
            tracked.held_until = Some(now.saturating_add(tracked.config.announce_delay));
        }
    }

    /// Works out the service's state from its health, drains and timers;
    /// sets it in the book and reports a change. Returns whether it changed.
    fn refresh(&mut self, now: Duration, service: &str, out: &mut Vec<Output>) -> bool {
        let (Some(health), Some(before)) = (self.book.health(service), self.book.state(service))
        else {
            return false;
        };
        let node_drains = &self.node_drains;
        let Some(tracked) = self.services.get_mut(service) else {
            return false;
        };
        let drained = !tracked.drains.is_empty() || !node_drains.is_empty();
        if drained && !tracked.was_drained {
            // Only routes that are out there need draining.
            tracked.draining_until = (before.announces() && !tracked.config.drain_time.is_zero())
                .then(|| now.saturating_add(tracked.config.drain_time));
        }
        if !drained || !health.serving() || tracked.draining_until.is_some_and(|u| now >= u) {
            tracked.draining_until = None;
        }
        tracked.was_drained = drained;
        if tracked.held_until.is_some_and(|u| now >= u) || !health.serving() {
            tracked.held_until = None;
        }
        let by = || {
            let sources: BTreeSet<DrainSource> =
                tracked.drains.union(node_drains).copied().collect();
            sources
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (state, reason) = if drained {
            match tracked.draining_until {
                Some(until) => (
                    ServiceState::Draining,
                    format!(
                        "drained by {}: announced with GRACEFUL_SHUTDOWN, withdrawn in {}",
                        by(),
                        format_duration(until.saturating_sub(now))
                    ),
                ),
                None => (ServiceState::Drained, format!("drained by {}", by())),
            }
        } else if let Some(until) = tracked.held_until {
            (
                ServiceState::Down,
                format!(
                    "up again; announced after announce_delay ({} left)",
                    format_duration(until.saturating_sub(now))
                ),
            )
        } else if health == ServiceState::Up {
            (health, String::new())
        } else {
            (health, tracked.reason.clone())
        };
        tracked.shown_reason.clone_from(&reason);
        if state == before {
            return false;
        }
        self.book.set_state(service, state);
        out.push(Output::Transition {
            service: service.to_string(),
            from: before,
            to: state,
            reason,
        });
        true
    }

    fn check_shutdown_drained(&mut self, out: &mut Vec<Output>) {
        if self.node_drains.contains(&DrainSource::Shutdown)
            && !self.shutdown_drained_sent
            && self
                .services
                .keys()
                .all(|s| self.book.state(s) != Some(ServiceState::Draining))
        {
            self.shutdown_drained_sent = true;
            out.push(Output::ShutdownDrained);
        }
    }

    fn configure(&mut self, now: Duration, config: &Config, out: &mut Vec<Output>) {
        let cli_before = self.cli_drains();
        let mut old = std::mem::take(&mut self.services);
        let mut unchanged = 0;
        for service in &config.services {
            let tracked = match old.remove(&service.name) {
                Some(mut kept) if kept.config == *service => {
                    unchanged += 1;
                    kept.stale_after = stale_after(service);
                    kept
                }
                Some(mut changed) => {
                    // Same name: health, drains and timers stay; a fresh task.
                    self.next_epoch += 1;
                    out.push(Output::Spawn {
                        service: service.name.clone(),
                        epoch: self.next_epoch,
                    });
                    changed.config = service.clone();
                    changed.epoch = self.next_epoch;
                    changed.stale_after = stale_after(service);
                    changed.last_seen = now;
                    changed.fast = false;
                    changed
                }
                None => {
                    self.next_epoch += 1;
                    out.push(Output::Spawn {
                        service: service.name.clone(),
                        epoch: self.next_epoch,
                    });
                    Tracked::new(service.clone(), self.next_epoch, now, false)
                }
            };
            self.services.insert(service.name.clone(), tracked);
        }
        let removed = old.len();
        for service in old.into_keys() {
            out.push(Output::Stop { service });
        }
        self.book.apply_config(config);
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in &names {
            self.refresh(now, name, out);
        }
        out.push(Output::Configured {
            services: self.services.len(),
            unchanged,
            removed,
        });
        let cli_after = self.cli_drains();
        if cli_after != cli_before {
            out.push(Output::CliDrains {
                node: cli_after.0,
                services: cli_after.1,
            });
        }
        self.dirty = true;
    }

    /// Down at once, whatever rise/fall say, and a fresh task.
    fn fail_closed(&mut self, now: Duration, service: &str, reason: String, out: &mut Vec<Output>) {
        let Some(tracked) = self.services.get_mut(service) else {
            return;
        };
        self.next_epoch += 1;
        tracked.epoch = self.next_epoch;
        tracked.last_seen = now;
        tracked.decided = true;
        tracked.reason = reason;
        if tracked.fast {
            // The fresh task starts at its normal pace.
            tracked.fast = false;
        }
        if let Some(t) = self.book.force_down(service) {
            self.health_changed(now, service, t.from, t.to);
        }
        self.refresh(now, service, out);
        out.push(Output::Spawn {
            service: service.to_string(),
            epoch: self.next_epoch,
        });
    }

    fn publish(&mut self, out: &mut Vec<Output>) {
        let routes = self.book.desired();
        if routes != *self.desired {
            self.desired = Arc::new(routes);
            out.push(Output::Publish {
                routes: self.desired.clone(),
            });
        }
    }

    fn check_ready(&mut self, out: &mut Vec<Output>) {
        if !self.ready_sent && self.services.values().all(|s| s.decided) {
            self.ready_sent = true;
            out.push(Output::Ready);
        }
    }
}
