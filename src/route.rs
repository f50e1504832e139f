//! What the engine hands the backends (the routes to announce) and what
//! the backends report back (what they announce). A leaf module (it
//! imports no other part of anycastd), so the engine that decides and the
//! backends that announce share it without knowing each other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use tokio::sync::watch;

/// The routes that should be announced now, as published to backends.
///
/// The set is shared (`Arc`): the engine, the status board and the backend
/// hold the same one, so publishing 10,000 routes copies none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRoutes {
    pub routes: Arc<BTreeSet<IpNet>>,
    /// When the verdict that produced this set was taken, so a backend can
    /// report how long the route change took to leave the process.
    pub changed_at: Option<Instant>,
    /// Whether every service has had its first verdict. Before that, an
    /// empty set means "not known yet", not "withdraw everything": a
    /// backend that may inherit routes (ExaBGP keeps a dead helper's) waits
    /// for it before its first reconcile.
    pub decided: bool,
}

impl DesiredRoutes {
    /// Nothing decided yet.
    pub fn empty() -> DesiredRoutes {
        DesiredRoutes {
            routes: Arc::default(),
            changed_at: None,
            decided: false,
        }
    }

    /// A decided set, changed at `changed_at`.
    pub fn decided(routes: BTreeSet<IpNet>, changed_at: Option<Instant>) -> DesiredRoutes {
        DesiredRoutes {
            routes: Arc::new(routes),
            changed_at,
            decided: true,
        }
    }
}

/// A next hop as ExaBGP's API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// ExaBGP's `self`: the session's local address.
    SelfAddress,
    Address(std::net::IpAddr),
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NextHop::SelfAddress => f.write_str("self"),
            NextHop::Address(a) => write!(f, "{a}"),
        }
    }
}

/// What each backend announces, as it reports it: keyed by who announces
/// (`exabgp`, `bird`, `native PEER`).
pub type AnnouncedRoutes = BTreeMap<String, BTreeSet<IpNet>>;

/// How a backend reports what it announces to the engine's owner loop,
/// which keeps the status board. A watch channel: only the latest state
/// matters, so a burst of changes costs nothing to queue however slow
/// the reader is.
#[derive(Debug, Clone)]
pub struct AnnouncedReporter(Arc<watch::Sender<AnnouncedRoutes>>);

impl Default for AnnouncedReporter {
    /// A reporter nobody reads (tests, `bird-flush`).
    fn default() -> AnnouncedReporter {
        AnnouncedReporter(Arc::new(watch::Sender::new(AnnouncedRoutes::new())))
    }
}

impl AnnouncedReporter {
    /// A reporter and the receiving end for the owner.
    pub fn channel() -> (AnnouncedReporter, watch::Receiver<AnnouncedRoutes>) {
        let (tx, rx) = watch::channel(AnnouncedRoutes::new());
        (AnnouncedReporter(Arc::new(tx)), rx)
    }

    /// `who` now announces `routes`.
    pub fn report(&self, who: &str, routes: &BTreeSet<IpNet>) {
        self.0.send_if_modified(|all| {
            if all.get(who) == Some(routes) {
                return false;
            }
            all.insert(who.to_string(), routes.clone());
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_wake_the_reader_only_on_a_change() {
        let (reporter, mut rx) = AnnouncedReporter::channel();
        let routes: BTreeSet<IpNet> = ["192.0.2.1/32".parse().unwrap()].into();
        reporter.report("exabgp", &routes);
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update()["exabgp"], routes);
        reporter.report("exabgp", &routes);
        assert!(!rx.has_changed().unwrap());
        // Nobody reading is fine.
        AnnouncedReporter::default().report("bird", &routes);
    }
}
