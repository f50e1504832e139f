//! The `native` backend: a minimal BGP-4 speaker for hosts with no routing
//! daemon. One session per configured peer announces the desired routes and
//! nothing else; what peers send is validated and then ignored (no RIB).
//!
//! ```text
//!                 supervisor (NativeBackend::run): restarts a task that ends
//!                     │                  or panics before shutdown
//!        ┌────────────┴──────────────┐
//! listener per address ──accepted──► per-peer task (io) ◄──► TCP ◄──► router
//! desired routes ─────────watch────►    │ events ▲ actions    (writer task
//!                                       ▼        │             per connection)
//!                              Session (pure FSM) ── packet (pure codec)
//! ```
//!
//! RFCs: 4271 (BGP-4), 4760 (multiprotocol: IPv6 unicast in MP_REACH /
//! MP_UNREACH), 6793 (4-octet AS), 5492 (capabilities), 2918 (route
//! refresh), 4724 §2 (End-of-RIB marker), 7606 (treat-as-withdraw for
//! attribute errors), 8203 (shutdown communication), 2385 (TCP-MD5),
//! 6608 (FSM error subcodes).

pub mod bfd;
pub mod io;
mod listener;
pub mod packet;
pub mod session;
mod sockopt;
mod supervise;
mod writer;

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Backend, BackendError, BackendFuture};
use crate::config::Config;
use crate::metrics;
use crate::peers::PeerReporter;
use crate::route::{AnnouncedReporter, DesiredRoutes};
use session::{Session, SessionConfig};

const NAME: &str = "native";

/// How long a peer or listener task that ended before shutdown waits
/// before it is started again.
const RESTART_AFTER: Duration = Duration::from_millis(500);

pub struct NativeBackend {
    /// Each peer's I/O settings and the config of its (fresh) session.
    peers: Vec<(io::PeerIo, SessionConfig)>,
    /// One per local address and port that peers are accepted on.
    listeners: BTreeMap<SocketAddr, listener::PassiveListener>,
    /// The peers with BFD, all run by one thread.
    bfd: Vec<bfd::io::BfdPeer>,
}

/// A jitter seed that differs between peers and between runs.
fn jitter_seed(peer: &crate::config::PeerConfig) -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(peer.remote_address)
}

impl NativeBackend {
    /// Builds one session per peer. Config resolution guarantees router_id,
    /// local_asn and peers for this backend.
    pub fn new(config: &Config) -> Result<NativeBackend, BackendError> {
        let (Some(router_id), Some(local_asn)) = (config.router_id, config.local_asn) else {
            return Err(BackendError::Misconfigured(
                "the native backend needs announcer.router_id and announcer.local_asn",
            ));
        };
        let next_hop = config.local_address.and_then(packet::ipv4_of);
        let mut listeners = BTreeMap::new();
        let mut bfd_peers = Vec::new();
        let peers = config
            .peers
            .iter()
            .map(|peer| {
                if let Some(nh) = peer.local_address.and_then(packet::ipv4_of).or(next_hop)
                    && packet::martian_next_hop(nh)
                {
                    tracing::warn!(
                        peer = %peer.remote_address,
                        next_hop = %nh,
                        "IPv4 routes are announced with this NEXT_HOP (the local address), \
                         which most routers refuse (FRR resets the session, GoBGP drops the routes)"
                    );
                }
                let session = SessionConfig {
                    local_asn,
                    remote_asn: peer.remote_asn,
                    router_id,
                    hold_time: peer.hold_time,
                    next_hop: peer.local_address.and_then(packet::ipv4_of).or(next_hop),
                    next_hop6: config.native.local_address6.or(match peer.local_address {
                        Some(std::net::IpAddr::V6(a)) => Some(a),
                        _ => None,
                    }),
                    shutdown_reason: config.native.shutdown_message.clone(),
                    passive: peer.passive,
                    jitter_seed: jitter_seed(peer),
                };
                let ttl = io::ttl_for(peer, local_asn);
                // Every peer is accepted from, not only passive ones.
                let bind = listener::bind_address(peer);
                let accepted = Some(
                    listeners
                        .entry(bind)
                        .or_insert_with(|| listener::PassiveListener::new(bind))
                        .expect(peer, ttl),
                );
                let io = io::PeerIo {
                    ttl,
                    peer: peer.clone(),
                    router_id: router_id.to_string(),
                    accepted,
                    announced: AnnouncedReporter::default(),
                    peers: PeerReporter::default(),
                    bfd: peer.bfd.map(|settings| {
                        let bfd = bfd::io::BfdPeer::new(
                            &peer.name,
                            peer.remote_address,
                            peer.local_address,
                            peer.enable_multihop,
                            settings,
                            &router_id.to_string(),
                        );
                        let view = bfd.view.subscribe();
                        bfd_peers.push(bfd);
                        view
                    }),
                };
                (io, session)
            })
            .collect();
        Ok(NativeBackend {
            peers,
            listeners,
            bfd: bfd_peers,
        })
    }

    /// Each peer reports its sessions (BGP and BFD) to `peers`.
    pub fn reporting_peers_to(mut self, peers: PeerReporter) -> Self {
        for (io, _) in &mut self.peers {
            io.peers = peers.clone();
            let (address, name) = (io.peer.remote_address.to_string(), io.peer.name.clone());
            peers.update(&name, |p| p.address = address);
        }
        for bfd in &mut self.bfd {
            bfd.reporter = peers.clone();
        }
        self
    }

    /// Each peer reports what it announces to `announced`.
    pub fn reporting_to(mut self, announced: AnnouncedReporter) -> Self {
        for (io, _) in &mut self.peers {
            io.announced = announced.clone();
        }
        self
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(
        self: Box<Self>,
        desired: watch::Receiver<DesiredRoutes>,
        shutdown: CancellationToken,
    ) -> BackendFuture {
        Box::pin(async move {
            metrics::backend_errors_zero(NAME, &["session", "listen", "task", "bfd"]);
            let mut tasks = Vec::new();
            if !self.bfd.is_empty() {
                let peers = std::sync::Arc::new(self.bfd);
                let stop = shutdown.clone();
                tasks.push(supervise::Task::new("BFD".into(), move || {
                    Box::pin(bfd::io::run(peers.clone(), stop.clone()))
                }));
            }
            for listener in self.listeners.into_values() {
                let name = format!("BGP listener {}", listener.address());
                let stop = shutdown.clone();
                tasks.push(supervise::Task::new(name, move || {
                    Box::pin(listener.clone().run(stop.clone()))
                }));
            }
            for (io, config) in self.peers {
                let name = format!("BGP peer {} ({})", io.peer.name, io.peer.remote_address);
                let (desired, stop) = (desired.clone(), shutdown.clone());
                tasks.push(supervise::Task::new(name, move || {
                    // A fresh session each time: nothing of the dead one's
                    // state is trusted.
                    let session = Session::new(config.clone());
                    Box::pin(io.clone().run(session, desired.clone(), stop.clone()))
                }));
            }
            // Each peer sends its withdrawals and a Cease, bounded inside
            // (io::SHUTDOWN_TIMEOUT); this bound only guards against a task
            // that cannot finish at all.
            let bound = io::SHUTDOWN_TIMEOUT + Duration::from_secs(1);
            if !supervise::run(tasks, shutdown, RESTART_AFTER, bound).await {
                tracing::warn!("some BGP sessions did not close in time");
            }
            tracing::info!("withdrew all routes from BGP peers");
            Ok(())
        })
    }
}
