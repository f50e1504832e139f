//! The `native` backend: a minimal BGP-4 speaker for hosts with no routing
//! daemon. One session per configured peer announces the desired routes and
//! nothing else; what peers send is validated and then ignored (no RIB).
//!
//! ```text
//! desired routes ──watch──► per-peer task (io) ◄──► TCP ◄──► router
//!                              │ events ▲ actions
//!                              ▼        │
//!                           Session (pure FSM) ── packet (pure codec)
//! ```
//!
//! RFCs: 4271 (BGP-4), 4760 (multiprotocol: IPv6 unicast in MP_REACH /
//! MP_UNREACH), 6793 (4-octet AS), 5492 (capabilities), 2918 (route
//! refresh), 4724 §2 (End-of-RIB marker), 7606 (treat-as-withdraw for
//! attribute errors), 8203 (shutdown communication), 2385 (TCP-MD5),
//! 6608 (FSM error subcodes).

pub mod io;
mod listener;
pub mod packet;
pub mod session;
mod sockopt;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Backend, BackendError, BackendFuture};
use crate::config::Config;
use crate::engine::DesiredRoutes;
use crate::metrics;
use session::{Session, SessionConfig};

const NAME: &str = "native";

pub struct NativeBackend {
    peers: Vec<(io::PeerIo, Session)>,
    /// One per local address and port that passive peers accept on.
    listeners: BTreeMap<SocketAddr, listener::PassiveListener>,
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
                let session = Session::new(SessionConfig {
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
                });
                let ttl = io::ttl_for(peer, local_asn);
                let accepted = peer.passive.then(|| {
                    let bind = listener::bind_address(peer);
                    listeners
                        .entry(bind)
                        .or_insert_with(|| listener::PassiveListener::new(bind))
                        .expect(peer, ttl)
                });
                let io = io::PeerIo {
                    ttl,
                    peer: peer.clone(),
                    router_id: router_id.to_string(),
                    accepted,
                };
                (io, session)
            })
            .collect();
        Ok(NativeBackend { peers, listeners })
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
            metrics::backend_errors_zero(NAME, &["session", "listen"]);
            let mut tasks = JoinSet::new();
            for listener in self.listeners.into_values() {
                tasks.spawn(listener.run(shutdown.clone()));
            }
            for (io, session) in self.peers {
                tasks.spawn(io.run(session, desired.clone(), shutdown.clone()));
            }
            shutdown.cancelled().await;
            // Each peer sends its withdrawals and a Cease, bounded inside; this
            // bound only guards against a task that cannot finish at all.
            let all_done = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(5), all_done)
                .await
                .is_err()
            {
                tracing::warn!("some BGP sessions did not close in time");
            }
            tracing::info!("withdrew all routes from BGP peers");
            Ok(())
        })
    }
}
