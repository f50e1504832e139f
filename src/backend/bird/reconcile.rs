//! The bird backend's decisions, free of I/O: whether a route set needs a
//! write and a `configure`, when to retry after a fault, and which faults
//! to log.
//!
//! - A change goes out at once. While a `configure` is in flight, later
//!   changes wait and go together in the next one (the loop awaits each
//!   apply, and the watch channel keeps only the latest set), so a burst
//!   costs at most two reconfigures and never two at a time.
//! - While BIRD is unreachable or refuses, or the files cannot be written,
//!   the latest set is retried at least once a second ([`RETRY_MAX`]): a
//!   `configure` is cheap, and the fault clearing must be noticed fast.
//! - A fault is logged when it starts or changes, and once when it clears.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backoff;
use crate::route::RouteSet;

/// The first retry after a fault.
pub const RETRY_MIN: Duration = Duration::from_millis(250);
/// Retries while faulted are never further apart than this.
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// What an apply's result means for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// BIRD has the set; `recovered` when a fault just cleared (log it).
    Accepted { recovered: bool },
    /// Try again in `retry_in`; `new_fault` when this fault was not the
    /// last one logged (log it; a repeat is not logged again).
    Failed { retry_in: Duration, new_fault: bool },
}

/// What BIRD was last told, and the fault state.
#[derive(Debug, Clone)]
pub struct Reconciler {
    /// The set BIRD last accepted, with each route's state and attributes;
    /// `None` until the first success.
    accepted: Option<Arc<RouteSet>>,
    /// The fault logged last; `None` while all is well.
    fault: Option<String>,
    backoff: Backoff,
}

impl Default for Reconciler {
    fn default() -> Reconciler {
        Reconciler {
            accepted: None,
            fault: None,
            backoff: Backoff::new(RETRY_MIN, RETRY_MAX),
        }
    }
}

impl Reconciler {
    pub fn new() -> Reconciler {
        Reconciler::default()
    }

    /// Whether `desired` must be written and configured: BIRD has not
    /// accepted exactly this set, states and attributes included (at start
    /// it has accepted nothing, so the files are rewritten from our own
    /// state once). The same `Arc` is equal without a look inside.
    pub fn needs_apply(&self, desired: &Arc<RouteSet>) -> bool {
        match &self.accepted {
            Some(accepted) => !Arc::ptr_eq(accepted, desired) && **accepted != **desired,
            None => true,
        }
    }

    /// What BIRD holds, as far as we know.
    pub fn accepted(&self) -> Option<&RouteSet> {
        self.accepted.as_deref()
    }

    /// BIRD accepted `routes`.
    pub fn applied(&mut self, routes: &Arc<RouteSet>) -> Outcome {
        self.accepted = Some(routes.clone());
        self.backoff.reset();
        Outcome::Accepted {
            recovered: self.fault.take().is_some(),
        }
    }

    /// The apply failed with `fault`.
    pub fn failed(&mut self, fault: String) -> Outcome {
        let new_fault = self.fault.as_deref() != Some(fault.as_str());
        self.fault = Some(fault);
        Outcome::Failed {
            retry_in: self.backoff.next_delay(),
            new_fault,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Announcement, Community, RouteAttributes, RouteClass, plain_routes};

    fn set(routes: &[&str]) -> Arc<RouteSet> {
        Arc::new(plain_routes(routes.iter().map(|r| r.parse().unwrap())))
    }

    /// `routes`, each announced in `class` with `attributes`.
    fn announced(routes: &[&str], class: RouteClass, attributes: RouteAttributes) -> Arc<RouteSet> {
        let attributes = Arc::new(attributes);
        Arc::new(
            routes
                .iter()
                .map(|r| {
                    let announcement = Announcement {
                        class,
                        attributes: attributes.clone(),
                    };
                    (r.parse().unwrap(), announcement)
                })
                .collect(),
        )
    }

    #[test]
    fn a_change_of_state_or_attributes_alone_needs_an_apply() {
        let mut r = Reconciler::new();
        let up = announced(
            &["192.0.2.1/32"],
            RouteClass::Up,
            RouteAttributes {
                med: Some(10),
                ..RouteAttributes::default()
            },
        );
        r.applied(&up);
        assert!(!r.needs_apply(&up));
        // An equal set in another allocation: nothing to do.
        assert!(!r.needs_apply(&Arc::new((*up).clone())));
        // Same prefixes, another MED.
        let med = announced(
            &["192.0.2.1/32"],
            RouteClass::Up,
            RouteAttributes {
                med: Some(100),
                ..RouteAttributes::default()
            },
        );
        assert!(r.needs_apply(&med));
        // Same prefixes and attributes, another state.
        let degraded = announced(
            &["192.0.2.1/32"],
            RouteClass::Degraded,
            RouteAttributes {
                med: Some(10),
                ..RouteAttributes::default()
            },
        );
        assert!(r.needs_apply(&degraded));
        // A community added.
        let draining = announced(
            &["192.0.2.1/32"],
            RouteClass::Up,
            RouteAttributes {
                med: Some(10),
                communities: vec![Community::GRACEFUL_SHUTDOWN],
                ..RouteAttributes::default()
            },
        );
        assert!(r.needs_apply(&draining));
        r.applied(&draining);
        assert!(!r.needs_apply(&draining));
        assert!(r.needs_apply(&up));
    }

    #[test]
    fn the_start_always_writes_then_only_changes_do() {
        let mut r = Reconciler::new();
        assert!(r.needs_apply(&set(&[])));
        assert_eq!(r.applied(&set(&[])), Outcome::Accepted { recovered: false });
        assert!(!r.needs_apply(&set(&[])));
        assert!(r.needs_apply(&set(&["192.0.2.1/32"])));
    }

    #[test]
    fn a_fault_is_retried_at_least_every_second_and_logged_once() {
        let mut r = Reconciler::new();
        let a = set(&["192.0.2.1/32"]);
        let delays: Vec<Duration> = (0..6)
            .map(|_| match r.failed("BIRD is not running".into()) {
                Outcome::Failed { retry_in, .. } => retry_in,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays[0], RETRY_MIN);
        assert!(delays.iter().all(|d| *d <= RETRY_MAX), "{delays:?}");
        assert_eq!(*delays.last().unwrap(), RETRY_MAX);
        // The same fault again is not new; another one is.
        assert_eq!(
            r.failed("BIRD is not running".into()),
            Outcome::Failed {
                retry_in: RETRY_MAX,
                new_fault: false
            }
        );
        assert!(matches!(
            r.failed("BIRD refused: syntax error".into()),
            Outcome::Failed {
                new_fault: true,
                ..
            }
        ));
        // Still nothing accepted: the set must be applied.
        assert!(r.needs_apply(&a));
        assert_eq!(r.applied(&a), Outcome::Accepted { recovered: true });
        // After a success the backoff starts over.
        assert_eq!(
            r.failed("BIRD is not running".into()),
            Outcome::Failed {
                retry_in: RETRY_MIN,
                new_fault: true
            }
        );
    }

    #[test]
    fn a_refused_set_is_not_taken_as_accepted() {
        let mut r = Reconciler::new();
        let before = set(&["192.0.2.1/32"]);
        r.applied(&before);
        r.failed("refused".into());
        assert_eq!(r.accepted(), Some(&*before));
        assert!(r.needs_apply(&set(&[])));
    }
}
