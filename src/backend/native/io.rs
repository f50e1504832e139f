//! Carries out a session's actions on real TCP connections: connecting
//! with the right source address, TTL and TCP-MD5 key, taking the peer's
//! own connections from the shared listener, framing and decoding received
//! bytes, and running the timers. Every decision is the [`Session`]'s.
//!
//! ```text
//!            ┌──────────── core loop (this task) ────────────┐
//! desired ──►│ events ─► Session ─► actions                  │
//! timers  ──►│  ▲                       │ push (never waits)  │
//! listener ─►│  │ read, decode          ▼                     │
//!            └──┼───────────── Outbox per connection ─────────┘
//!               │                       │
//!      TCP read half             writer task ─► TCP write half
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bfd::io::BfdView;
use super::bfd::session::PathVerdict;
use super::packet::{self, DecodeError, Family, Frame, Message};
use super::session::{Action, Event, Session, Side, State, Timer};
use super::sockopt::set_tcp_md5;
use super::writer::{Outbox, Writer};
use crate::config::PeerConfig;
use crate::metrics;
use crate::route::{AnnouncedReporter, DesiredRoutes};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the goodbye (withdrawals + Cease) may take at shutdown.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a closed connection may take to write its last NOTIFICATION.
const LINGER: Duration = Duration::from_secs(2);

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

#[derive(Clone)]
pub struct PeerIo {
    pub peer: PeerConfig,
    pub ttl: u32,
    /// Metric labels.
    pub router_id: String,
    /// Where the shared listener hands this peer's connections to us.
    pub accepted: Option<Arc<super::listener::Accepted>>,
    /// Where what the peer holds is reported (`native NAME`).
    pub announced: AnnouncedReporter,
    /// Where the session's state is reported (status page).
    pub peers: crate::peers::PeerReporter,
    /// The peer's BFD session, if BFD is enabled for it.
    pub bfd: Option<watch::Receiver<BfdView>>,
}

type Connecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<TcpStream>> + Send>>;

/// One TCP connection: its read half and buffer here, its write half in a
/// writer task fed through the outbox.
struct Connection {
    reader: OwnedReadHalf,
    buffer: Vec<u8>,
    outbox: Arc<Outbox>,
    writer: Writer,
}

impl Connection {
    fn new(stream: TcpStream, label: &Arc<str>, router_id: &Arc<str>) -> Connection {
        let (reader, half) = stream.into_split();
        let outbox = Arc::new(Outbox::default());
        let writer = Writer::spawn(half, outbox.clone(), label.clone(), router_id.clone());
        Connection {
            reader,
            buffer: Vec::with_capacity(8192),
            outbox,
            writer,
        }
    }

    /// Closes after writing the NOTIFICATION queued, if any, within
    /// [`LINGER`]; the read half goes at once.
    fn close(self) {
        self.outbox.close();
        let mut writer = self.writer;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(LINGER, writer.finished()).await;
        });
    }
}

/// What one connection reported to the core loop.
enum Report {
    Read(std::io::Result<usize>),
    WriterEnded(std::io::Result<()>),
}

async fn next_report(conn: &mut Option<Connection>) -> Report {
    match conn {
        Some(c) => tokio::select! {
            read = c.reader.read_buf(&mut c.buffer) => Report::Read(read),
            ended = c.writer.finished() => Report::WriterEnded(ended),
        },
        None => std::future::pending().await,
    }
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Ipv4Unicast => "IPv4",
        Family::Ipv6Unicast => "IPv6",
    }
}

impl PeerIo {
    fn label(&self) -> String {
        self.peer.remote_address.to_string()
    }

    fn connect(&self) -> Connecting {
        let peer = self.peer.clone();
        let ttl = self.ttl;
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

    /// Why a connection attempt failed, with a hint where a wrong TCP-MD5
    /// password looks just like an absent peer.
    fn connect_failure(&self, e: &std::io::Error) -> String {
        let md5_like = matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut
        );
        if self.peer.password.is_some() && md5_like {
            format!("{e} (check the TCP-MD5 password: a peer with another key drops our SYNs)")
        } else {
            e.to_string()
        }
    }

    /// Runs one peer until `shutdown`, then says goodbye.
    pub async fn run(
        self,
        mut session: Session,
        mut desired: watch::Receiver<DesiredRoutes>,
        shutdown: CancellationToken,
    ) {
        let label = self.label();
        let label_arc: Arc<str> = label.as_str().into();
        let router_id_arc: Arc<str> = self.router_id.as_str().into();
        let mut conns: [Option<Connection>; 2] = [None, None];
        let mut just_accepted: Option<TcpStream> = None;
        let mut timers: HashMap<Timer, Instant> = HashMap::new();
        let mut connecting: Option<Connecting> = None;
        let mut established_at: Option<Instant> = None;
        // When the verdict behind a pending route change was taken.
        let mut latency_pending: Option<std::time::Instant> = None;
        metrics::bgp_session_state(&label, &self.router_id, State::Idle as u8);
        // A fresh session (also after a restart) has announced nothing yet.
        let reported_as = format!("native {}", self.peer.name);
        self.announced.report(&reported_as, session.announced());

        let mut bfd = self.bfd.clone();
        // What of the BFD view was handed to the session: its path verdict
        // and how many times it had left Up.
        let mut bfd_seen = (PathVerdict::Unanswered, 0);
        let initial = desired.borrow_and_update().routes.clone();
        let mut pending: Vec<Event> = vec![Event::Desired(initial)];
        // Held before the first connection attempt if BFD says so already
        // (a fresh session is not held: Up and Unanswered change nothing).
        if let Some(rx) = &mut bfd {
            let view = rx.borrow_and_update();
            bfd_seen.1 = view.downs;
            pending.extend(bfd_events(&mut bfd_seen, &view));
        }
        pending.push(Event::Start);
        loop {
            // Feed queued events; carry out every resulting action.
            while !pending.is_empty() {
                let event = pending.remove(0);
                let actions = session.handle(event);
                // What the peer holds changes only with an UPDATE sent or a reset.
                let announced_changed = actions
                    .iter()
                    .any(|a| matches!(a, Action::Send(_, Message::Update(_)) | Action::Down(_)));
                for action in actions {
                    match action {
                        Action::Connect => connecting = Some(self.connect()),
                        Action::Accept => {
                            if let Some(stream) = just_accepted.take() {
                                conns[slot(Side::Incoming)] =
                                    Some(Connection::new(stream, &label_arc, &router_id_arc));
                            }
                        }
                        Action::Refuse(notification) => {
                            if let Some(stream) = just_accepted.take() {
                                tracing::debug!(peer = %label, reason = %notification.describe(), "refused the peer's new connection");
                                let conn = Connection::new(stream, &label_arc, &router_id_arc);
                                let _ = conn.outbox.push(&Message::Notification(notification));
                                conn.close();
                            }
                        }
                        Action::Send(side, message) => {
                            if let Some(conn) = &conns[slot(side)]
                                && let Err(e) = conn.outbox.push(&message)
                            {
                                pending.push(Event::Closed(side, e.to_string()));
                            }
                        }
                        Action::Close(side) => {
                            if let Some(conn) = conns[slot(side)].take() {
                                conn.close();
                            }
                            if side == Side::Outgoing {
                                connecting = None;
                            }
                        }
                        Action::SetTimer(timer, after) => {
                            timers.insert(timer, Instant::now() + after);
                        }
                        Action::CancelTimer(timer) => {
                            timers.remove(&timer);
                        }
                        Action::StateChanged(state) => {
                            metrics::bgp_session_state(&label, &self.router_id, state as u8);
                            self.peers
                                .update(&self.peer.name, |p| p.bgp = state.name().into());
                        }
                        Action::Up => {
                            established_at = Some(Instant::now());
                            tracing::info!(peer = %label, name = %self.peer.name, "BGP session established");
                        }
                        Action::Down(why) => {
                            established_at = None;
                            metrics::bgp_flap(&label, &self.router_id);
                            metrics::backend_error("native", "session");
                            tracing::warn!(peer = %label, name = %self.peer.name, reason = %why, "BGP session down");
                        }
                        Action::NotEstablished(why) => {
                            metrics::backend_error("native", "session");
                            tracing::debug!(peer = %label, reason = %why, "BGP session not established");
                        }
                        Action::CollisionResolved { closed } => {
                            tracing::debug!(peer = %label, closed = closed.name(), "connection collision (RFC 4271 §6.8): closed one of two connections");
                        }
                        Action::Unreachable(why) => {
                            tracing::warn!(peer = %label, name = %self.peer.name, reason = %why, "cannot connect to BGP peer; retrying (logged again when it is back)");
                        }
                        Action::Reachable => {
                            tracing::info!(peer = %label, name = %self.peer.name, "BGP peer reachable again");
                        }
                        Action::FamilyMissing { family, routes } => {
                            let f = family_name(family);
                            tracing::warn!(peer = %label, name = %self.peer.name, "peer did not negotiate {f} unicast; {routes} {f} routes are not announced to it");
                        }
                        Action::FamilyCleared(family) => {
                            let f = family_name(family);
                            tracing::info!(peer = %label, name = %self.peer.name, "peer negotiated {f} unicast; {f} routes are announced to it again");
                        }
                        Action::Unannounceable { prefixes, why } => {
                            tracing::warn!(peer = %label, name = %self.peer.name, ?prefixes, reason = %why, "not announcing these routes to this peer");
                        }
                        Action::TreatedAsWithdraw(why) => {
                            tracing::debug!(peer = %label, reason = %why, "received UPDATE treated as withdraw (RFC 7606)");
                        }
                        Action::HeldByBfd { why, fault: true } => {
                            metrics::bgp_held_by_bfd(&label, &self.router_id);
                            tracing::warn!(peer = %label, name = %self.peer.name, reason = %why, "BFD is down: BGP session closed and held down until BFD is up again");
                        }
                        Action::HeldByBfd { why, fault: false } => {
                            tracing::info!(peer = %label, name = %self.peer.name, "BGP waits: {why}");
                        }
                        Action::ReleasedByBfd => {
                            tracing::info!(peer = %label, name = %self.peer.name, "BFD no longer holds the BGP session down; connecting");
                        }
                        Action::Finished => return,
                    }
                }
                // A connection the session did not take is closed.
                just_accepted = None;
                if announced_changed {
                    metrics::bgp_prefixes(&label, &self.router_id, session.announced().len());
                    // Per peer: each session announces on its own.
                    self.announced.report(&reported_as, session.announced());
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
            let [outgoing, incoming] = &mut conns;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    goodbye(&mut session, &mut conns, &label).await;
                    metrics::bgp_session_state(&label, &self.router_id, State::Idle as u8);
                    return;
                }
                result = poll_connect(&mut connecting) => {
                    connecting = None;
                    match result {
                        Ok(stream) => {
                            let local = stream.local_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
                            conns[slot(Side::Outgoing)] = Some(Connection::new(stream, &label_arc, &router_id_arc));
                            pending.push(Event::Connected { local });
                        }
                        Err(e) => pending.push(Event::ConnectFailed(self.connect_failure(&e))),
                    }
                }
                stream = next_accepted(&self.accepted) => {
                    let local = stream.local_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
                    just_accepted = Some(stream);
                    pending.push(Event::Accepted { local });
                }
                report = next_report(outgoing) => {
                    pending.extend(self.on_report(Side::Outgoing, report, &mut conns, &session));
                }
                report = next_report(incoming) => {
                    pending.extend(self.on_report(Side::Incoming, report, &mut conns, &session));
                }
                changed = desired.changed() => {
                    if changed.is_err() {
                        // The engine is gone: treat as shutdown.
                        shutdown.cancel();
                        continue;
                    }
                    let routes = desired.borrow_and_update().clone();
                    pending.push(Event::Desired(routes.routes.clone()));
                    if let Some(at) = routes.changed_at
                        && session.state() == State::Established
                    {
                        // Measured once the UPDATEs are queued (next loop turn).
                        latency_pending = Some(at);
                    }
                }
                events = bfd_changed(&mut bfd, &mut bfd_seen) => {
                    match events {
                        Some(events) => pending.extend(events),
                        // The BFD side is gone for good (shutdown): nothing more from it.
                        None => bfd = None,
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

    /// Turns what a connection reported into events. A connection that
    /// ended (peer closed, read or write failed) is dropped here at once.
    fn on_report(
        &self,
        side: Side,
        report: Report,
        conns: &mut [Option<Connection>; 2],
        session: &Session,
    ) -> Vec<Event> {
        let closed = |why: String| vec![Event::Closed(side, why)];
        let events = match report {
            Report::Read(Ok(0)) => closed("peer closed the connection".into()),
            Report::Read(Err(e)) => closed(e.to_string()),
            Report::WriterEnded(Ok(())) => closed("connection closed".into()),
            Report::WriterEnded(Err(e)) => closed(format!("write failed: {e}")),
            Report::Read(Ok(_)) => {
                let Some(conn) = &mut conns[slot(side)] else {
                    return Vec::new();
                };
                return drain_messages(
                    side,
                    &mut conn.buffer,
                    session.four_octet_as(side),
                    &self.label(),
                    &self.router_id,
                );
            }
        };
        conns[slot(side)] = None;
        events
    }
}

/// Shutdown: withdraw while the peer reads, then the Cease, then close;
/// all within [`SHUTDOWN_TIMEOUT`], whatever the peer does.
async fn goodbye(session: &mut Session, conns: &mut [Option<Connection>; 2], label: &str) {
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    let mut last_words = Vec::new();
    for action in session.handle(Event::Stop) {
        match action {
            Action::Send(side, message @ Message::Update(_)) => {
                if let Some(conn) = &conns[slot(side)] {
                    let _ = conn.outbox.push(&message);
                }
            }
            Action::Send(side, message) => last_words.push((side, message)),
            _ => {}
        }
    }
    let drained = async {
        for conn in conns.iter().flatten() {
            conn.outbox.idle().await;
        }
    };
    let in_time = tokio::time::timeout_at(deadline, drained).await.is_ok();
    for (side, message) in last_words {
        if let Some(conn) = &conns[slot(side)] {
            let _ = conn.outbox.push(&message);
        }
    }
    let mut writers: Vec<Connection> = conns.iter_mut().filter_map(Option::take).collect();
    for conn in &writers {
        conn.outbox.close();
    }
    let closed = async {
        for conn in &mut writers {
            let _ = conn.writer.finished().await;
        }
    };
    if !in_time || tokio::time::timeout_at(deadline, closed).await.is_err() {
        tracing::warn!(peer = %label, "peer did not take our withdrawals in time");
    }
}

fn slot(side: Side) -> usize {
    match side {
        Side::Outgoing => 0,
        Side::Incoming => 1,
    }
}

/// What of a BFD view has been handed to the BGP session: its path
/// verdict, and how many times the BFD session had left Up.
type BfdSeen = (PathVerdict, u64);

/// The BGP session's events for `view`, against what was handed on
/// (`seen`, updated); none if nothing changed. A Down that was over before
/// this task looked (Up again, `downs` grown) still takes the BGP session
/// down, then the current verdict follows.
fn bfd_events(seen: &mut BfdSeen, view: &BfdView) -> Vec<Event> {
    if (view.path, view.downs) == *seen {
        return Vec::new();
    }
    let mut events = Vec::new();
    if view.downs > seen.1 && view.path != PathVerdict::Down {
        events.push(Event::BfdDown(view.down_diag.to_string()));
    }
    events.push(match view.path {
        PathVerdict::Down => Event::BfdDown(view.down_diag.to_string()),
        PathVerdict::Waiting => Event::BfdWaiting,
        PathVerdict::Up | PathVerdict::Unanswered => Event::BfdUp,
    });
    *seen = (view.path, view.downs);
    events
}

/// The session's events for the next change of the BFD view; `None` once
/// the BFD side is gone. Cancel-safe: `seen` changes only when events are
/// returned.
async fn bfd_changed(
    bfd: &mut Option<watch::Receiver<BfdView>>,
    seen: &mut BfdSeen,
) -> Option<Vec<Event>> {
    let Some(rx) = bfd else {
        return std::future::pending().await;
    };
    loop {
        let events = bfd_events(seen, &rx.borrow_and_update());
        if !events.is_empty() {
            return Some(events);
        }
        rx.changed().await.ok()?;
    }
}

async fn next_accepted(accepted: &Option<Arc<super::listener::Accepted>>) -> TcpStream {
    match accepted {
        Some(accepted) => accepted.next().await,
        None => std::future::pending().await,
    }
}

/// Splits complete messages off the front of `buffer` and decodes them.
fn drain_messages(
    side: Side,
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
                        events.push(Event::Received(side, incoming));
                    }
                    Err(DecodeError::Fatal(n)) => {
                        events.push(Event::Invalid(side, n));
                        buffer.clear();
                        return events;
                    }
                }
            }
            Err(DecodeError::Fatal(n)) => {
                events.push(Event::Invalid(side, n));
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

    use tokio::io::AsyncWriteExt;
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
        let routes: BTreeSet<ipnet::IpNet> = routes.iter().map(|r| r.parse().unwrap()).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (fake, shutdown, task, _) = established_with(hold_time, routes, listener).await;
        (fake, shutdown, task)
    }

    /// As [`established`], against `listener`, which is handed back for
    /// the next connection.
    async fn established_with(
        hold_time: u16,
        routes: BTreeSet<ipnet::IpNet>,
        listener: TcpListener,
    ) -> (
        FakePeer,
        CancellationToken,
        tokio::task::JoinHandle<()>,
        TcpListener,
    ) {
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
            bfd: None,
        };
        let session = Session::new(SessionConfig {
            local_asn: 65001,
            remote_asn: 65002,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time,
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            next_hop6: None,
            shutdown_reason: "test over".into(),
            passive: false,
            jitter_seed: 1,
        });
        let (_tx, desired) = watch::channel(DesiredRoutes::decided(
            crate::route::plain_routes(routes),
            None,
        ));
        // The sender must outlive the test's session: leak it into the task.
        let shutdown = CancellationToken::new();
        let io = PeerIo {
            announced: AnnouncedReporter::default(),
            peers: crate::peers::PeerReporter::default(),
            bfd: None,
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
        (fake, shutdown, task, listener)
    }

    /// A listener whose accepted sockets have a tiny receive buffer, and
    /// 1,000,000 routes (about 5 MB of UPDATEs, more than a socket buffers): a peer that stops reading
    /// leaves our writes stuck.
    fn stingy_listener_and_many_routes() -> (TcpListener, BTreeSet<ipnet::IpNet>) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(4).unwrap();
        let routes = (0..1_000_000u32)
            .map(|i| ipnet::IpNet::from(std::net::IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i))))
            .collect();
        (listener, routes)
    }

    /// A session Established with a peer that has read the first UPDATE of
    /// a large table and now stops reading.
    async fn stalled_peer(
        hold_time: u16,
    ) -> (
        FakePeer,
        CancellationToken,
        tokio::task::JoinHandle<()>,
        TcpListener,
    ) {
        let (listener, routes) = stingy_listener_and_many_routes();
        let (mut fake, shutdown, task, listener) =
            established_with(hold_time, routes, listener).await;
        assert!(matches!(fake.next().await, Some(Incoming::Update(_))));
        (fake, shutdown, task, listener)
    }

    /// Issue 10, item 6: the peer completes OPEN and stops reading while we
    /// have a large table to send. Writes stall in the writer task only: our
    /// hold timer still fires at 3 s, the session is reset, and we connect
    /// again after the (capped, jittered) wait.
    #[tokio::test(start_paused = true)]
    async fn peer_that_stops_reading_still_hits_our_hold_timer() {
        let (fake, _shutdown, task, listener) = stalled_peer(3).await;
        let started = Instant::now();
        // Not reading, not sending: only our own timers can end this.
        let again = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .expect("no reconnect: the hold timer never fired");
        again.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited <= Duration::from_millis(4100),
            "hold timer (3 s) plus a retry wait of at most 1 s: {waited:?}"
        );
        drop(fake);
        task.abort();
    }

    /// Issue 10, bounded shutdown: SIGTERM while the peer reads nothing;
    /// the goodbye gives up after SHUTDOWN_TIMEOUT.
    #[tokio::test(start_paused = true)]
    async fn shutdown_is_bounded_when_the_peer_stops_reading() {
        let (fake, shutdown, task, _listener) = stalled_peer(90).await;
        let started = Instant::now();
        shutdown.cancel();
        tokio::time::timeout(SHUTDOWN_TIMEOUT + Duration::from_millis(100), task)
            .await
            .expect("shutdown not bounded")
            .unwrap();
        assert!(
            started.elapsed() >= SHUTDOWN_TIMEOUT,
            "the goodbye was tried: {:?}",
            started.elapsed()
        );
        drop(fake);
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
            bfd: None,
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

    fn view(path: PathVerdict, downs: u64) -> BfdView {
        let mut view = BfdView {
            state: crate::backend::native::bfd::packet::BfdState::Down,
            remote_state: crate::backend::native::bfd::packet::BfdState::Down,
            diag: crate::backend::native::bfd::packet::Diagnostic::None,
            down_diag: crate::backend::native::bfd::packet::Diagnostic::DetectionTimeExpired,
            path,
            multihop: false,
            tx_interval: None,
            detection_time: None,
            changes: 0,
            downs,
        };
        if path == PathVerdict::Up {
            view.state = crate::backend::native::bfd::packet::BfdState::Up;
        }
        view
    }

    /// What the BGP session is told of each BFD view: nothing twice, a
    /// Down that was over before the task looked still as a Down first.
    #[test]
    fn bfd_views_become_session_events() {
        let down = || Event::BfdDown("control detection time expired".into());
        let mut seen = (PathVerdict::Unanswered, 0);
        assert_eq!(
            bfd_events(&mut seen, &view(PathVerdict::Waiting, 0)),
            [Event::BfdWaiting]
        );
        assert_eq!(
            bfd_events(&mut seen, &view(PathVerdict::Up, 0)),
            [Event::BfdUp]
        );
        assert!(
            bfd_events(&mut seen, &view(PathVerdict::Up, 0)).is_empty(),
            "no change"
        );
        assert_eq!(bfd_events(&mut seen, &view(PathVerdict::Down, 1)), [down()]);
        assert_eq!(
            bfd_events(&mut seen, &view(PathVerdict::Up, 1)),
            [Event::BfdUp]
        );
        // Down and Up again between two looks.
        assert_eq!(
            bfd_events(&mut seen, &view(PathVerdict::Up, 2)),
            [down(), Event::BfdUp]
        );
        // The peer stops answering: BGP runs without BFD.
        assert_eq!(
            bfd_events(&mut seen, &view(PathVerdict::Unanswered, 2)),
            [Event::BfdUp]
        );
        assert_eq!(seen, (PathVerdict::Unanswered, 2));
    }
}
