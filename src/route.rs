//! What the engine hands the backends (the routes to announce) and what
//! the backends report back (what they announce). A leaf module (it
//! imports no other part of anycastd), so the engine that decides and the
//! backends that announce share it without knowing each other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use tokio::sync::watch;

/// A standard community (RFC 1997), `high:low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl Community {
    /// GRACEFUL_SHUTDOWN (RFC 8326): "prefer any other path".
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);

    pub fn new(high: u16, low: u16) -> Community {
        Community((u32::from(high) << 16) | u32::from(low))
    }

    pub fn high(self) -> u16 {
        (self.0 >> 16) as u16
    }

    pub fn low(self) -> u16 {
        self.0 as u16
    }
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.high(), self.low())
    }
}

/// A large community (RFC 8092), `global:local1:local2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity(pub u32, pub u32, pub u32);

impl std::fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.0, self.1, self.2)
    }
}

/// The path attributes a route carries beyond what its session sets
/// (ORIGIN, NEXT_HOP, the AS_PATH's own AS): one state's profile, as the
/// configuration resolved it. The default carries nothing extra.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttributes {
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF; sent to iBGP peers only.
    pub local_pref: Option<u32>,
    /// Sorted, without repeats.
    pub communities: Vec<Community>,
    /// Sorted, without repeats.
    pub large_communities: Vec<LargeCommunity>,
    /// How many extra times the local AS is prepended to the AS_PATH.
    pub prepend: u8,
}

impl RouteAttributes {
    /// Whether it carries nothing beyond the session's defaults.
    pub fn is_plain(&self) -> bool {
        *self == RouteAttributes::default()
    }
}

impl std::fmt::Display for RouteAttributes {
    /// `med 10, local_pref 0, communities 65000:1 65535:0, large_communities
    /// 65000:1:2, prepend 2`; empty when plain.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(med) = self.med {
            parts.push(format!("med {med}"));
        }
        if let Some(lp) = self.local_pref {
            parts.push(format!("local_pref {lp}"));
        }
        let join = |items: Vec<String>| items.join(" ");
        if !self.communities.is_empty() {
            parts.push(format!(
                "communities {}",
                join(self.communities.iter().map(|c| c.to_string()).collect())
            ));
        }
        if !self.large_communities.is_empty() {
            parts.push(format!(
                "large_communities {}",
                join(
                    self.large_communities
                        .iter()
                        .map(|c| c.to_string())
                        .collect()
                )
            ));
        }
        if self.prepend > 0 {
            parts.push(format!("prepend {}", self.prepend));
        }
        f.write_str(&parts.join(", "))
    }
}

/// Which state a route is announced in. Backends carry out the attributes;
/// the class is for those that can only sort routes (BIRD's prefix sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum RouteClass {
    #[default]
    Up,
    Degraded,
    Draining,
}

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Up => "up",
            RouteClass::Degraded => "degraded",
            RouteClass::Draining => "draining",
        }
    }
}

/// How one desired route is to be announced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Announcement {
    pub class: RouteClass,
    /// Shared: every route of a state and service has the same profile.
    pub attributes: Arc<RouteAttributes>,
}

impl Announcement {
    /// An Up route with no extra attributes.
    pub fn plain() -> Announcement {
        Announcement::default()
    }
}

impl std::fmt::Display for Announcement {
    /// The class, then the attributes: `draining: med 10, communities 65535:0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.class.as_str())?;
        if !self.attributes.is_plain() {
            write!(f, ": {}", self.attributes)?;
        }
        Ok(())
    }
}

impl serde::Serialize for Announcement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Announcement {
    /// Reads what [`Display`](std::fmt::Display) wrote back as far as the
    /// class (for `anycastd status`); the attributes stay text for people.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Announcement, D::Error> {
        let text = String::deserialize(d)?;
        let class = match text.split(':').next().unwrap_or("") {
            "degraded" => RouteClass::Degraded,
            "draining" => RouteClass::Draining,
            _ => RouteClass::Up,
        };
        Ok(Announcement {
            class,
            attributes: Arc::default(),
        })
    }
}

/// Every desired route and how to announce it.
pub type RouteSet = BTreeMap<IpNet, Announcement>;

/// A route set of plain announcements (tests, tools).
pub fn plain_routes(routes: impl IntoIterator<Item = IpNet>) -> RouteSet {
    routes
        .into_iter()
        .map(|route| (route, Announcement::plain()))
        .collect()
}

/// The routes that should be announced now, as published to backends.
///
/// The set is shared (`Arc`): the engine, the status board and the backend
/// hold the same one, so publishing 10,000 routes copies none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRoutes {
    pub routes: Arc<RouteSet>,
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
    pub fn decided(routes: RouteSet, changed_at: Option<Instant>) -> DesiredRoutes {
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
