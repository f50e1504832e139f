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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::health::ServiceState;
use super::routes::RouteBook;
use crate::checks::AttemptPolicy;
use crate::config::{Config, ServiceConfig, format_duration};

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
        passed: bool,
        /// The failing checks' reasons in one line; empty when it passed.
        reason: String,
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
    Publish { routes: Arc<BTreeSet<IpNet>> },
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
#[derive(Debug)]
struct Tracked {
    config: ServiceConfig,
    /// The task whose rounds count.
    epoch: u64,
    stale_after: Duration,
    /// When the last verdict came, or the task was (re)started.
    last_seen: Duration,
    /// Has had a verdict (or was declared stale): counts for readiness.
    decided: bool,
}

/// The engine's state: every service's health and the desired routes.
#[derive(Debug, Default)]
pub struct Core {
    book: RouteBook,
    services: BTreeMap<String, Tracked>,
    next_epoch: u64,
    desired: Arc<BTreeSet<IpNet>>,
    ready_sent: bool,
}

impl Core {
    pub fn new() -> Core {
        Core::default()
    }

    /// The service's state, if it is configured.
    pub fn state(&self, service: &str) -> Option<ServiceState> {
        self.book.state(service)
    }

    /// When the next [`Input::Tick`] is due: the earliest stale deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.services
            .values()
            .map(|s| s.last_seen.saturating_add(s.stale_after))
            .min()
    }

    /// Feeds one input that happened at `now`; returns what to do.
    pub fn handle(&mut self, now: Duration, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Configure(config) => self.configure(now, &config, &mut out),
            Input::Round {
                service,
                epoch,
                passed,
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
                if let Some(t) = self.book.observe(&service, passed) {
                    out.push(Output::Transition {
                        service,
                        from: t.from,
                        to: t.to,
                        reason: if t.to == ServiceState::Up {
                            String::new()
                        } else {
                            reason
                        },
                    });
                    self.publish(&mut out);
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
                    self.publish(&mut out);
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
                if !stale.is_empty() {
                    self.publish(&mut out);
                }
            }
        }
        self.check_ready(&mut out);
        out
    }

    fn configure(&mut self, now: Duration, config: &Config, out: &mut Vec<Output>) {
        let mut old = std::mem::take(&mut self.services);
        let mut unchanged = 0;
        for service in &config.services {
            let tracked = match old.remove(&service.name) {
                Some(mut kept) if kept.config == *service => {
                    unchanged += 1;
                    kept.stale_after = stale_after(service);
                    kept
                }
                previous => {
                    self.next_epoch += 1;
                    out.push(Output::Spawn {
                        service: service.name.clone(),
                        epoch: self.next_epoch,
                    });
                    Tracked {
                        config: service.clone(),
                        epoch: self.next_epoch,
                        stale_after: stale_after(service),
                        last_seen: now,
                        decided: previous.is_some_and(|p| p.decided),
                    }
                }
            };
            self.services.insert(service.name.clone(), tracked);
        }
        let removed = old.len();
        for service in old.into_keys() {
            out.push(Output::Stop { service });
        }
        self.book.apply_config(config);
        out.push(Output::Configured {
            services: self.services.len(),
            unchanged,
            removed,
        });
        self.publish(out);
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
        if let Some(t) = self.book.force_down(service) {
            out.push(Output::Transition {
                service: service.to_string(),
                from: t.from,
                to: t.to,
                reason,
            });
        }
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
