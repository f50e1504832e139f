//! Carries out a session's actions on a real TCP connection: connecting (or
//! accepting) with the right source address, TTL and TCP-MD5 key, framing
//! and decoding received bytes, and running the timers. Every decision is
//! the [`Session`]'s.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::packet::{self, DecodeError, Frame, Message};
use super::session::{Action, Event, Session, State, Timer};
use super::sockopt::set_tcp_md5;
use crate::config::PeerConfig;
use crate::engine::DesiredRoutes;
use crate::metrics;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the goodbye (withdrawals + Cease) may take at shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// The TTL of our packets: 1 for eBGP without multihop (routers drop
/// anything else from a "directly connected" peer), the multihop TTL or 255
/// otherwise.
pub fn ttl_for(peer: &PeerConfig, local_asn: u32) -> u32 {
    let external = peer.remote_asn != local_asn;
    match (external, peer.enable_multihop) {
        (true, false) => 1,
        (true, true) => peer.multihop_ttl.map(u32::from).unwrap_or(255),
        (false, _) => 255,
    }
}

/// Sets the TTL of our packets: IP_TTL on IPv4 sockets, the unicast hop
/// limit on IPv6 ones. (Linux accepts IP_TTL on an IPv6 socket too, but it
/// only applies to IPv4-mapped traffic: an IPv6 session kept hop limit 64
/// whatever the TTL was meant to be.)
pub(super) fn set_ttl(socket: socket2::SockRef<'_>, ttl: u32, ipv6: bool) -> std::io::Result<()> {
    if ipv6 {
        socket.set_unicast_hops_v6(ttl)
    } else {
        socket.set_ttl_v4(ttl)
    }
}

pub struct PeerIo {
    pub peer: PeerConfig,
    pub ttl: u32,
    /// Metric labels.
    pub router_id: String,
    /// For a passive peer: where the shared listener hands its connections.
    pub accepted: Option<std::sync::Arc<super::listener::Accepted>>,
}

type Connecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<TcpStream>> + Send>>;

impl PeerIo {
    fn label(&self) -> String {
        self.peer.remote_address.to_string()
    }

    fn connect(&self) -> Connecting {
        let peer = self.peer.clone();
        let ttl = self.ttl;
        if let Some(accepted) = &self.accepted {
            let accepted = accepted.clone();
            return Box::pin(async move { Ok(accepted.next().await) });
        }
        Box::pin(async move {
            let remote = SocketAddr::new(peer.remote_address, peer.port);
            let socket = if remote.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(local) = peer.local_address {
                socket.bind(SocketAddr::new(local, 0))?;
            }
            set_ttl(socket2::SockRef::from(&socket), ttl, remote.is_ipv6())?;
            if let Some(password) = &peer.password {
                set_tcp_md5(&socket, peer.remote_address, password.as_bytes())?;
            }
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(remote))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }

    /// Runs one peer until `shutdown`, then says goodbye.
    pub async fn run(
        self,
        mut session: Session,
        mut desired: watch::Receiver<DesiredRoutes>,
        shutdown: CancellationToken,
    ) {
        let label = self.label();
        let mut conn = Connection::default();
        let mut timers: HashMap<Timer, Instant> = HashMap::new();
        let mut connecting: Option<Connecting> = None;
        let mut buffer: Vec<u8> = Vec::with_capacity(8192);
        let mut established_at: Option<Instant> = None;
        // When the verdict behind a pending route change was taken.
        let mut latency_pending: Option<std::time::Instant> = None;
        metrics::bgp_session_state(&label, &self.router_id, State::Idle as u8);

        let initial = desired.borrow_and_update().routes.clone();
        let mut pending: Vec<Event> = vec![Event::Desired(initial), Event::Start];
        loop {
            // Feed queued events; carry out every resulting action.
            while !pending.is_empty() {
                let event = pending.remove(0);
                let actions = session.handle(event);
                // What the peer holds changes only with an UPDATE sent or a reset.
                let announced_changed = actions
                    .iter()
                    .any(|a| matches!(a, Action::Send(Message::Update(_)) | Action::Down(_)));
                for action in actions {
                    match action {
                        Action::Connect => connecting = Some(self.connect()),
                        Action::Send(message) => {
                            if let Err(e) = conn.send(&message, &label, &self.router_id).await {
                                pending.push(Event::Closed(format!("write failed: {e}")));
                            }
                        }
                        Action::Close => conn = Connection::default(),
                        Action::SetTimer(timer, after) => {
                            timers.insert(timer, Instant::now() + after);
                        }
                        Action::CancelTimer(timer) => {
                            timers.remove(&timer);
                        }
                        Action::StateChanged(state) => {
                            metrics::bgp_session_state(&label, &self.router_id, state as u8);
                        }
                        Action::Up => {
                            established_at = Some(Instant::now());
                            tracing::info!(peer = %label, name = %self.peer.name, "BGP session established");
                        }
                        Action::Down(why) => {
                            if established_at.take().is_some() {
                                metrics::bgp_flap(&label, &self.router_id);
                                tracing::warn!(peer = %label, name = %self.peer.name, reason = %why, "BGP session down");
                            } else {
                                tracing::debug!(peer = %label, reason = %why, "BGP session not established");
                            }
                            metrics::backend_error("native", "session");
                        }
                        Action::Unannounceable { prefixes, why } => {
                            tracing::warn!(peer = %label, name = %self.peer.name, ?prefixes, reason = %why, "not announcing these routes to this peer");
                        }
                        Action::TreatedAsWithdraw(why) => {
                            tracing::debug!(peer = %label, reason = %why, "received UPDATE treated as withdraw (RFC 7606)");
                        }
                        Action::Finished => return,
                    }
                }
                if announced_changed {
                    metrics::bgp_prefixes(&label, &self.router_id, session.announced().len());
                    // Per peer: each session announces on its own.
                    crate::status::set_announced(
                        &format!("native {}", self.peer.name),
                        session.announced(),
                    );
                }
            }
            if let Some(at) = latency_pending.take() {
                metrics::route_change_latency("native", at.elapsed().as_secs_f64());
            }
            if let Some(at) = established_at {
                metrics::bgp_uptime(&label, &self.router_id, at.elapsed().as_secs_f64());
            }

            let next_timer = timers
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(t, at)| (*t, *at));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let goodbye = async {
                        for action in session.handle(Event::Stop) {
                            if let Action::Send(message) = action {
                                let _ = conn.send(&message, &label, &self.router_id).await;
                            }
                        }
                        conn.flush().await;
                    };
                    if tokio::time::timeout(SHUTDOWN_TIMEOUT, goodbye).await.is_err() {
                        tracing::warn!(peer = %label, "peer did not take our withdrawals in time");
                    }
                    metrics::bgp_session_state(&label, &self.router_id, State::Idle as u8);
                    return;
                }
                result = poll_connect(&mut connecting) => {
                    connecting = None;
                    match result {
                        Ok(stream) => {
                            let local = stream.local_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
                            conn = Connection::from(stream);
                            buffer.clear();
                            pending.push(Event::Connected { local });
                        }
                        Err(e) => pending.push(Event::ConnectFailed(e.to_string())),
                    }
                }
                read = conn.read(&mut buffer) => {
                    match read {
                        Ok(0) => pending.push(Event::Closed("peer closed the connection".into())),
                        Ok(_) => pending.extend(drain_messages(&mut buffer, session.four_octet_as(), &label, &self.router_id)),
                        Err(e) => pending.push(Event::Closed(e.to_string())),
                    }
                }
                changed = desired.changed() => {
                    if changed.is_err() {
                        // The engine is gone: treat as shutdown.
                        shutdown.cancel();
                        continue;
                    }
                    let routes = desired.borrow_and_update().clone();
                    pending.push(Event::Desired(routes.routes));
                    if let Some(at) = routes.changed_at
                        && session.state() == State::Established
                    {
                        // Measured once the UPDATEs are written (next loop turn).
                        latency_pending = Some(at);
                    }
                }
                _ = sleep_until(next_timer.map(|(_, at)| at)), if next_timer.is_some() => {
                    if let Some((timer, _)) = next_timer {
                        timers.remove(&timer);
                        pending.push(Event::TimerFired(timer));
                    }
                }
            }
        }
    }
}

/// Splits complete messages off the front of `buffer` and decodes them.
fn drain_messages(
    buffer: &mut Vec<u8>,
    four_octet_as: bool,
    label: &str,
    router_id: &str,
) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        match packet::frame(buffer) {
            Ok(Frame::Incomplete) => return events,
            Ok(Frame::Complete(len)) => {
                let message: Vec<u8> = buffer.drain(..len).collect();
                match packet::decode(&message, four_octet_as) {
                    Ok(incoming) => {
                        metrics::bgp_message(
                            label,
                            router_id,
                            "received",
                            incoming_kind(&incoming),
                        );
                        events.push(Event::Received(incoming));
                    }
                    Err(DecodeError::Fatal(n)) => {
                        events.push(Event::Invalid(n));
                        buffer.clear();
                        return events;
                    }
                }
            }
            Err(DecodeError::Fatal(n)) => {
                events.push(Event::Invalid(n));
                buffer.clear();
                return events;
            }
        }
    }
}

fn incoming_kind(incoming: &packet::Incoming) -> &'static str {
    match incoming {
        packet::Incoming::Open(_) => "open",
        packet::Incoming::Update(_) => "update",
        packet::Incoming::Notification(_) => "notification",
        packet::Incoming::Keepalive => "keepalive",
        packet::Incoming::RouteRefresh { .. } => "route_refresh",
    }
}

/// The TCP connection, split so reading and writing do not block each other.
#[derive(Default)]
struct Connection {
    reader: Option<OwnedReadHalf>,
    writer: Option<OwnedWriteHalf>,
}

impl From<TcpStream> for Connection {
    fn from(stream: TcpStream) -> Self {
        let (reader, writer) = stream.into_split();
        Connection {
            reader: Some(reader),
            writer: Some(writer),
        }
    }
}

impl Connection {
    async fn send(
        &mut self,
        message: &Message,
        label: &str,
        router_id: &str,
    ) -> std::io::Result<()> {
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        writer.write_all(&packet::encode(message)).await?;
        metrics::bgp_message(label, router_id, "sent", message.kind());
        Ok(())
    }

    async fn flush(&mut self) {
        if let Some(writer) = &mut self.writer {
            let _ = writer.flush().await;
            let _ = writer.shutdown().await;
        }
    }

    async fn read(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
        match &mut self.reader {
            Some(reader) => reader.read_buf(buffer).await,
            None => std::future::pending().await,
        }
    }
}

async fn poll_connect(connecting: &mut Option<Connecting>) -> std::io::Result<TcpStream> {
    match connecting {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;

    use tokio::net::TcpListener;

    use super::*;
    use crate::backend::native::packet::{Capability, Incoming, Notification, Open};
    use crate::backend::native::session::SessionConfig;

    /// The far end of the session, played by the test over real loopback TCP.
    struct FakePeer {
        stream: TcpStream,
        buffer: Vec<u8>,
    }

    impl FakePeer {
        async fn next(&mut self) -> Option<Incoming> {
            loop {
                if let Ok(Frame::Complete(len)) = packet::frame(&self.buffer) {
                    let message: Vec<u8> = self.buffer.drain(..len).collect();
                    return packet::decode(&message, true).ok();
                }
                if self.stream.read_buf(&mut self.buffer).await.ok()? == 0 {
                    return None;
                }
            }
        }

        async fn send(&mut self, message: Message) {
            self.stream
                .write_all(&packet::encode(&message))
                .await
                .unwrap();
        }
    }

    /// Starts anycastd's side against a listener and completes the OPEN exchange.
    async fn established(
        hold_time: u16,
        routes: &[&str],
    ) -> (FakePeer, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = PeerConfig {
            name: "fake".into(),
            remote_address: "127.0.0.1".parse().unwrap(),
            remote_asn: 65002,
            enable_multihop: true,
            multihop_ttl: None,
            port,
            local_address: None,
            password: None,
            passive: false,
            hold_time,
        };
        let session = Session::new(SessionConfig {
            local_asn: 65001,
            remote_asn: 65002,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time,
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            next_hop6: None,
            shutdown_reason: "test over".into(),
        });
        let routes: BTreeSet<ipnet::IpNet> = routes.iter().map(|r| r.parse().unwrap()).collect();
        let (_tx, desired) = watch::channel(DesiredRoutes::decided(routes, None));
        // The sender must outlive the test's session: leak it into the task.
        let shutdown = CancellationToken::new();
        let io = PeerIo {
            peer,
            ttl: 64,
            router_id: "192.0.2.1".into(),
            accepted: None,
        };
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let _keep = _tx;
            io.run(session, desired, stop).await;
        });
        let (stream, _) = listener.accept().await.unwrap();
        let mut fake = FakePeer {
            stream,
            buffer: Vec::new(),
        };
        assert!(matches!(fake.next().await, Some(Incoming::Open(_))));
        fake.send(Message::Open(Open {
            my_as: 65002,
            hold_time,
            router_id: Ipv4Addr::new(192, 0, 2, 2),
            capabilities: vec![
                Capability::Multiprotocol { afi: 1, safi: 1 },
                Capability::FourOctetAs(65002),
            ],
        }))
        .await;
        assert_eq!(fake.next().await, Some(Incoming::Keepalive));
        fake.send(Message::Keepalive).await;
        (fake, shutdown, task)
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_gets_keepalives_then_hold_timer_expired() {
        let (mut fake, _shutdown, task) = established(3, &["192.0.2.10/32"]).await;
        let started = Instant::now();
        let mut keepalives = 0;
        loop {
            match fake.next().await {
                Some(Incoming::Keepalive) => keepalives += 1,
                Some(Incoming::Notification(n)) => {
                    assert_eq!((n.code, n.subcode), (4, 0));
                    break;
                }
                Some(Incoming::Update(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // Keepalives every second (hold 3 s / 3); the hold timer fires at 3 s,
        // the same instant as the third keepalive, so that one may go or not.
        assert!((2..=3).contains(&keepalives), "{keepalives} keepalives");
        assert_eq!(started.elapsed().as_secs(), 3);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_withdraws_then_sends_cease() {
        let (mut fake, shutdown, task) = established(90, &["192.0.2.10/32"]).await;
        match fake.next().await {
            Some(Incoming::Update(u)) => {
                assert_eq!(
                    u.announced,
                    vec!["192.0.2.10/32".parse::<ipnet::IpNet>().unwrap()]
                )
            }
            other => panic!("expected the table, got {other:?}"),
        }
        assert!(matches!(fake.next().await, Some(Incoming::Update(u)) if u.end_of_rib.is_some()));
        shutdown.cancel();
        match fake.next().await {
            Some(Incoming::Update(u)) => {
                assert_eq!(
                    u.withdrawn,
                    vec!["192.0.2.10/32".parse::<ipnet::IpNet>().unwrap()]
                )
            }
            other => panic!("expected the withdrawal, got {other:?}"),
        }
        assert_eq!(
            fake.next().await,
            Some(Incoming::Notification(
                Notification::administrative_shutdown("test over")
            ))
        );
        assert_eq!(fake.next().await, None, "connection closed after the Cease");
        task.await.unwrap();
    }

    #[test]
    fn ttl_goes_where_each_family_reads_it() {
        let v4 = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        set_ttl(socket2::SockRef::from(&v4), 1, false).unwrap();
        assert_eq!(v4.ttl_v4().unwrap(), 1);
        // What the first version did: IP_TTL on an IPv6 socket is accepted
        // and changes nothing an IPv6 packet carries.
        let v6 = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        v6.set_ttl_v4(2).unwrap();
        assert_ne!(v6.unicast_hops_v6().unwrap(), 2);
        set_ttl(socket2::SockRef::from(&v6), 2, true).unwrap();
        assert_eq!(v6.unicast_hops_v6().unwrap(), 2);
    }

    #[test]
    fn ttl_is_one_for_direct_ebgp_only() {
        let peer = |remote_asn: u32, enable_multihop: bool, multihop_ttl: Option<u8>| PeerConfig {
            name: "r1".into(),
            remote_address: "192.0.2.2".parse().unwrap(),
            remote_asn,
            enable_multihop,
            multihop_ttl,
            port: 179,
            local_address: None,
            password: None,
            passive: false,
            hold_time: 90,
        };
        let local_asn = 65001;
        // eBGP without multihop: routers treat the peer as directly connected.
        assert_eq!(ttl_for(&peer(65002, false, None), local_asn), 1);
        assert_eq!(ttl_for(&peer(65002, false, Some(5)), local_asn), 1);
        assert_eq!(ttl_for(&peer(65002, true, None), local_asn), 255);
        assert_eq!(ttl_for(&peer(65002, true, Some(3)), local_asn), 3);
        // iBGP is multihop by nature.
        assert_eq!(ttl_for(&peer(65001, false, None), local_asn), 255);
        assert_eq!(ttl_for(&peer(65001, true, Some(3)), local_asn), 255);
    }
}
