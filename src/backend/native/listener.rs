//! Inbound connections: one listening socket per local address and port,
//! shared by every peer that accepts there, handing each accepted connection
//! to the session of the peer it comes from. Passive peers need it; every
//! other peer is accepted too (on port 179), so a router that comes back can
//! connect at once instead of waiting for our next attempt. Such a socket
//! is optional: if it cannot be bound (port taken, no
//! CAP_NET_BIND_SERVICE), that is logged once at warn and those peers work
//! active-only.
//!
//! One socket per peer cannot work: Linux refuses a second listener on the
//! same address and port (SO_REUSEADDR does not allow it, and SO_REUSEPORT
//! would spread connections over the listeners by hash, so a peer's
//! connection could land on another peer's socket and be refused).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::sockopt::set_tcp_md5;
use crate::backend::Backoff;
use crate::config::PeerConfig;
use crate::metrics;

/// Where a passive peer's accepted connections arrive. It holds at most
/// one: a newer connection is what the peer is using, an older one it has
/// given up on.
#[derive(Default)]
pub struct Accepted {
    waiting: std::sync::Mutex<Option<TcpStream>>,
    arrived: Notify,
}

impl Accepted {
    fn deliver(&self, stream: TcpStream) {
        let replaced = self
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(stream);
        if replaced.is_some() {
            tracing::debug!("replaced a connection the session had not taken yet");
        }
        self.arrived.notify_one();
    }

    /// The next connection from this peer.
    pub async fn next(&self) -> TcpStream {
        loop {
            let waiting = self
                .waiting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            if let Some(stream) = waiting {
                return stream;
            }
            // notify_one stores a permit when nobody waits, so a delivery
            // between the check above and this await is not lost.
            self.arrived.notified().await;
        }
    }
}

/// The BGP port, where peers that are not passive are accepted.
pub const BGP_PORT: u16 = 179;

/// Where a peer's connections are accepted: its `local_address` (or the
/// unspecified address of the peer's family), on its `port` when passive,
/// else on [`BGP_PORT`] (`port` is then the peer's own).
pub fn bind_address(peer: &PeerConfig) -> SocketAddr {
    let ip = peer
        .local_address
        .unwrap_or(if peer.remote_address.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        });
    SocketAddr::new(ip, if peer.passive { peer.port } else { BGP_PORT })
}

/// What the listener knows of one peer it accepts for.
#[derive(Clone)]
struct Expected {
    ttl: u32,
    password: Option<String>,
    accepted: Arc<Accepted>,
}

/// One listening socket and the peers it accepts for, by remote address.
#[derive(Clone)]
pub struct PassiveListener {
    bind: SocketAddr,
    peers: HashMap<IpAddr, Expected>,
    /// A passive peer depends on this socket: failing to bind is an error,
    /// retried. Otherwise a warning, logged once.
    required: bool,
}

impl PassiveListener {
    pub fn new(bind: SocketAddr) -> PassiveListener {
        PassiveListener {
            bind,
            peers: HashMap::new(),
            required: false,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.bind
    }

    /// Registers a peer; returns where its connections will arrive.
    pub fn expect(&mut self, peer: &PeerConfig, ttl: u32) -> Arc<Accepted> {
        self.required |= peer.passive;
        let accepted = Arc::new(Accepted::default());
        self.peers.insert(
            peer.remote_address,
            Expected {
                ttl,
                password: peer.password.clone(),
                accepted: accepted.clone(),
            },
        );
        accepted
    }

    fn listen(&self) -> std::io::Result<TcpListener> {
        let socket = if self.bind.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        // TCP-MD5 keys are per remote address, so one listening socket holds
        // the key of every peer that has one.
        for (remote, expected) in &self.peers {
            if let Some(password) = &expected.password {
                set_tcp_md5(&socket, *remote, password.as_bytes())?;
            }
        }
        socket.bind(self.bind)?;
        socket.listen(16)
    }

    /// Accepts until `shutdown`. A socket that cannot be opened (address in
    /// use, not assigned) is logged once per distinct error, counted, and
    /// retried with backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut last_error: Option<String> = None;
        loop {
            let listener = match self.listen() {
                Ok(listener) => listener,
                Err(e) => {
                    let message = e.to_string();
                    if last_error.is_none() && !self.required {
                        tracing::warn!(address = %self.bind, error = %message, "cannot listen for BGP peers; they are connected to, not accepted from, until this clears");
                        metrics::backend_error("native", "listen");
                    } else if self.required {
                        if last_error.as_deref() != Some(&message) {
                            tracing::error!(address = %self.bind, error = %message, "cannot listen for passive BGP peers; retrying");
                        }
                        metrics::backend_error("native", "listen");
                    }
                    last_error = Some(message);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                    }
                }
            };
            if last_error.take().is_some() {
                tracing::info!(address = %self.bind, "listening for BGP peers");
            }
            backoff.reset();
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((stream, from)) => self.hand_over(stream, from),
                    // Per-connection failures (the peer reset before we
                    // took it, out of descriptors): keep the socket.
                    Err(e) => {
                        tracing::warn!(address = %self.bind, error = %e, "accepting a BGP connection failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                }
            }
        }
    }

    fn hand_over(&self, stream: TcpStream, from: SocketAddr) {
        let Some(expected) = self.peers.get(&from.ip()) else {
            tracing::warn!(from = %from, address = %self.bind, "refused a BGP connection from an address that is not a configured peer");
            return;
        };
        let _ = super::io::set_ttl(
            socket2::SockRef::from(&stream),
            expected.ttl,
            from.is_ipv6(),
        );
        let _ = stream.set_nodelay(true);
        expected.accepted.deliver(stream);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::AsyncReadExt;

    use super::*;

    fn peer(remote: [u8; 4], port: u16) -> PeerConfig {
        PeerConfig {
            name: format!("{remote:?}"),
            remote_address: IpAddr::from(remote),
            remote_asn: 65002,
            enable_multihop: true,
            multihop_ttl: None,
            port,
            local_address: Some(IpAddr::from([127, 0, 0, 1])),
            password: None,
            passive: true,
            hold_time: 90,
            bfd: None,
        }
    }

    /// Connects from `source` to `to`, retrying while nothing listens yet.
    async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
        loop {
            let socket = TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::new(Ipv4Addr::from(source).into(), 0))
                .unwrap();
            match socket.connect(to).await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("timed out")
    }

    async fn free_port() -> u16 {
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        probe.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn two_peers_share_one_socket_and_each_gets_its_own_connection() {
        let port = free_port().await;
        let (a, b) = (peer([127, 0, 0, 2], port), peer([127, 0, 0, 3], port));
        let bind = bind_address(&a);
        assert_eq!(bind, bind_address(&b));
        let mut listener = PassiveListener::new(bind);
        let from_a = listener.expect(&a, 1);
        let from_b = listener.expect(&b, 255);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(listener.run(shutdown.clone()));

        // B first, then A: each lands with its own session, whatever the order.
        let mut dialled_b = within(connect_from([127, 0, 0, 3], bind)).await;
        let dialled_a = within(connect_from([127, 0, 0, 2], bind)).await;
        let got_a = within(from_a.next()).await;
        let got_b = within(from_b.next()).await;
        assert_eq!(got_a.peer_addr().unwrap(), dialled_a.local_addr().unwrap());
        assert_eq!(got_b.peer_addr().unwrap(), dialled_b.local_addr().unwrap());
        // Each accepted socket carries its own peer's TTL.
        assert_eq!(got_a.ttl().unwrap(), 1);
        assert_eq!(got_b.ttl().unwrap(), 255);
        drop(got_b);
        let mut byte = [0u8; 1];
        assert_eq!(within(dialled_b.read(&mut byte)).await.unwrap(), 0);

        // A stranger is refused: its connection is closed at once.
        let mut stranger = within(connect_from([127, 0, 0, 4], bind)).await;
        let read = within(stranger.read(&mut byte)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "stranger got {read:?}");

        shutdown.cancel();
        within(task).await.unwrap();
    }

    #[tokio::test]
    async fn a_newer_connection_replaces_one_not_taken_yet() {
        let port = free_port().await;
        let a = peer([127, 0, 0, 2], port);
        let bind = bind_address(&a);
        let mut listener = PassiveListener::new(bind);
        let from_a = listener.expect(&a, 64);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(listener.run(shutdown.clone()));

        let mut first = within(connect_from([127, 0, 0, 2], bind)).await;
        // Wait until the listener has accepted the first (it closes once replaced).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = within(connect_from([127, 0, 0, 2], bind)).await;
        let mut byte = [0u8; 1];
        assert_eq!(within(first.read(&mut byte)).await.unwrap(), 0);
        let got = within(from_a.next()).await;
        assert_eq!(got.peer_addr().unwrap(), second.local_addr().unwrap());

        shutdown.cancel();
        within(task).await.unwrap();
    }

    #[tokio::test]
    async fn an_address_in_use_is_retried_until_free() {
        let holder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bind = holder.local_addr().unwrap();
        let a = peer([127, 0, 0, 2], bind.port());
        let mut listener = PassiveListener::new(bind_address(&a));
        let from_a = listener.expect(&a, 64);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(listener.run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(holder);
        // The retry (after 500 ms) binds; the peer's connection then arrives.
        let dialled = within(connect_from([127, 0, 0, 2], bind)).await;
        let got = within(from_a.next()).await;
        assert_eq!(got.peer_addr().unwrap(), dialled.local_addr().unwrap());
        shutdown.cancel();
        task.await.unwrap();
    }
}
