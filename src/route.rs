//! What the engine hands the backends: the routes to announce. A leaf
//! module (it imports no other part of anycastd), so the engine that
//! decides and the backends that announce share it without knowing each
//! other.

use std::collections::BTreeSet;
use std::time::Instant;

use ipnet::IpNet;

/// The routes that should be announced now, as published to backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRoutes {
    pub routes: BTreeSet<IpNet>,
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
            routes: BTreeSet::new(),
            changed_at: None,
            decided: false,
        }
    }

    /// A decided set, changed at `changed_at`.
    pub fn decided(routes: BTreeSet<IpNet>, changed_at: Option<Instant>) -> DesiredRoutes {
        DesiredRoutes {
            routes,
            changed_at,
            decided: true,
        }
    }
}
