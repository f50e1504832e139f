//! What each BGP peer of the native backend looks like (its session and
//! its BFD session), as the backend reports it to the engine loop, which
//! copies it into the status board. Like `route`, it imports no other part
//! of anycastd: backends write it, the engine reads it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's address.
    pub address: String,
    /// The BGP session's state (`idle` … `established`).
    pub bgp: String,
    /// The BFD session, when BFD is enabled for this peer.
    #[serde(default)]
    pub bfd: Option<BfdStatus>,
}

/// One peer's BFD session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BfdStatus {
    /// `admin_down`, `down`, `init`, `up`.
    pub state: String,
    /// The state the peer last said it was in.
    pub remote_state: String,
    /// What BFD means for BGP: `up`, `down` (BGP held down) or
    /// `unanswered` (the peer has not answered BFD, or said AdminDown: BGP
    /// runs without it).
    pub path: String,
    /// Why the session last left Up.
    pub last_down: String,
    pub multihop: bool,
    /// The interval we send at, as negotiated (before jitter).
    pub tx_interval_ms: Option<f64>,
    /// How long the peer may stay silent, as negotiated.
    pub detection_time_ms: Option<f64>,
    /// State changes since start.
    pub changes: u64,
}

/// Peers by name.
pub type PeerStatuses = BTreeMap<String, PeerStatus>;

/// Where a backend reports its peers; cheap to clone.
#[derive(Clone)]
pub struct PeerReporter(Arc<watch::Sender<PeerStatuses>>);

impl Default for PeerReporter {
    /// A reporter nobody reads (tests, `validate`).
    fn default() -> PeerReporter {
        PeerReporter(Arc::new(watch::Sender::new(PeerStatuses::new())))
    }
}

impl PeerReporter {
    /// A reporter and the receiving end for the owner.
    pub fn channel() -> (PeerReporter, watch::Receiver<PeerStatuses>) {
        let (tx, rx) = watch::channel(PeerStatuses::new());
        (PeerReporter(Arc::new(tx)), rx)
    }

    /// Changes peer `name`'s entry; readers wake only if it changed.
    pub fn update(&self, name: &str, change: impl FnOnce(&mut PeerStatus)) {
        self.0.send_if_modified(|all| {
            let before = all.get(name).cloned();
            let entry = all.entry(name.to_string()).or_default();
            change(entry);
            before.as_ref() != Some(entry)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_wake_the_reader_only_on_a_change() {
        let (reporter, mut rx) = PeerReporter::channel();
        reporter.update("r1", |p| p.bgp = "idle".into());
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update()["r1"].bgp, "idle");
        reporter.update("r1", |p| p.bgp = "idle".into());
        assert!(!rx.has_changed().unwrap());
        reporter.update("r1", |p| p.bgp = "established".into());
        assert!(rx.has_changed().unwrap());
    }
}
