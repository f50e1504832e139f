//! Carries out every BFD session's actions: UDP sockets, the TTL check,
//! demultiplexing, and the timers. Runs on a thread of its own
//! (`anycastd-bfd`, a single-threaded runtime), so that a busy check engine
//! never delays a packet the router counts on: a late packet is a false
//! "node down" at the router. Every decision is the [`BfdSession`]'s.
//!
//! ```text
//!  UDP 3784/4784 (one socket per family and port) ──► decode ─► session by
//!  Your Discriminator, else by source address ─► BfdSession ─► Send ──► a
//!  UDP socket per session (source port 49152–65535, TTL 255)
//!                                                │ StateChanged
//!                                                ▼
//!                       watch<BfdView> per peer ──► the peer's BGP task
//! ```

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::packet::{BfdState, ControlPacket, DecodeError, Diagnostic};
use super::session::{
    BfdOutput, BfdSession, BfdTimers, FIRST_ANSWER_WITHIN, PathVerdict, SILENT_FOR,
};
use crate::config::BfdSettings;
use crate::metrics;
use crate::peers::{BfdStatus, PeerReporter};

/// RFC 5881 §4: single-hop control packets.
pub const SINGLE_HOP_PORT: u16 = 3784;
/// RFC 5883 §5: multihop control packets.
pub const MULTIHOP_PORT: u16 = 4784;
/// RFC 5881 §4: the source port range.
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// How often sockets that could not be opened are tried again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// What the BGP task and the status page see of a peer's BFD session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdView {
    pub state: BfdState,
    pub remote_state: BfdState,
    pub diag: Diagnostic,
    /// Why the session last left Up.
    pub down_diag: Diagnostic,
    pub path: PathVerdict,
    pub multihop: bool,
    pub tx_interval: Option<Duration>,
    pub detection_time: Option<Duration>,
    /// State changes since start.
    pub changes: u64,
    /// Times the session left Up since start: a reader that missed a short
    /// Down (Up again before it looked) still sees it happened.
    pub downs: u64,
}

impl BfdView {
    fn new(multihop: bool) -> BfdView {
        BfdView {
            state: BfdState::Down,
            remote_state: BfdState::Down,
            diag: Diagnostic::None,
            down_diag: Diagnostic::None,
            path: PathVerdict::Waiting,
            multihop,
            tx_interval: None,
            detection_time: None,
            changes: 0,
            downs: 0,
        }
    }
}

/// One peer's BFD settings and where its session's view is published.
#[derive(Clone)]
pub struct BfdPeer {
    pub name: String,
    pub remote: IpAddr,
    /// Source address; the routing table's choice when `None`.
    pub local: Option<IpAddr>,
    pub multihop: bool,
    pub settings: BfdSettings,
    pub view: Arc<watch::Sender<BfdView>>,
    /// Metric label.
    pub router_id: String,
    /// Where the session is reported for the status page.
    pub reporter: PeerReporter,
}

impl BfdPeer {
    pub fn new(
        name: &str,
        remote: IpAddr,
        local: Option<IpAddr>,
        multihop: bool,
        settings: BfdSettings,
        router_id: &str,
    ) -> BfdPeer {
        BfdPeer {
            name: name.to_string(),
            remote,
            local,
            multihop,
            settings,
            view: Arc::new(watch::Sender::new(BfdView::new(multihop))),
            router_id: router_id.to_string(),
            reporter: PeerReporter::default(),
        }
    }

    fn port(&self) -> u16 {
        if self.multihop {
            MULTIHOP_PORT
        } else {
            SINGLE_HOP_PORT
        }
    }
}

/// Runs every session until `shutdown` on the `anycastd-bfd` thread;
/// returns when that thread ends (after saying AdminDown at shutdown, or
/// on a fault, which the backend's supervisor restarts).
pub async fn run(peers: Arc<Vec<BfdPeer>>, shutdown: CancellationToken) {
    let (done, ended) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("anycastd-bfd".into())
        .spawn(move || {
            // Dropped when the thread ends, by return or by panic.
            let _done = done;
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(serve(&peers, shutdown)),
                Err(e) => tracing::error!("cannot start the BFD runtime: {e}"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the BFD thread: {e}");
        return;
    }
    let _ = ended.await;
}

/// Which receiving socket: family and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Listen {
    ipv6: bool,
    multihop: bool,
}

impl Listen {
    const ALL: [Listen; 4] = [
        Listen {
            ipv6: false,
            multihop: false,
        },
        Listen {
            ipv6: false,
            multihop: true,
        },
        Listen {
            ipv6: true,
            multihop: false,
        },
        Listen {
            ipv6: true,
            multihop: true,
        },
    ];

    fn of(peer: &BfdPeer) -> Listen {
        Listen {
            ipv6: peer.remote.is_ipv6(),
            multihop: peer.multihop,
        }
    }

    fn port(self) -> u16 {
        if self.multihop {
            MULTIHOP_PORT
        } else {
            SINGLE_HOP_PORT
        }
    }
}

/// A receiving socket and its buffer.
struct Receiver {
    listen: Listen,
    /// Some peer's session uses this family and port.
    wanted: bool,
    socket: Option<UdpSocket>,
    /// The last error opening it, logged once per change.
    error: Option<String>,
    buffer: [u8; 128],
}

struct Received {
    len: usize,
    from: SocketAddr,
    /// TTL or hop limit of the packet, when the kernel said.
    ttl: Option<u8>,
    truncated: bool,
}

impl Receiver {
    async fn recv(&mut self) -> std::io::Result<Received> {
        let Some(socket) = &self.socket else {
            return std::future::pending().await;
        };
        let buffer = &mut self.buffer;
        socket
            .async_io(Interest::READABLE, || recv_with_ttl(socket, buffer))
            .await
    }

    /// The next queued datagram, if one is there now.
    fn try_recv(&mut self) -> std::io::Result<Received> {
        let Some(socket) = &self.socket else {
            return Err(std::io::ErrorKind::WouldBlock.into());
        };
        let buffer = &mut self.buffer;
        socket.try_io(Interest::READABLE, || recv_with_ttl(socket, buffer))
    }

    /// Opens the socket if it is wanted and not open yet.
    fn open(&mut self) {
        if !self.wanted || self.socket.is_some() {
            return;
        }
        match open_receiver(self.listen) {
            Ok(socket) => {
                if self.error.take().is_some() {
                    tracing::info!(port = self.listen.port(), "BFD socket open");
                }
                self.socket = Some(socket);
            }
            Err(e) => {
                let e = e.to_string();
                if self.error.as_ref() != Some(&e) {
                    metrics::backend_error("native", "bfd");
                    tracing::error!(
                        port = self.listen.port(),
                        ipv6 = self.listen.ipv6,
                        "cannot receive BFD packets: {e}; BFD stays down (BGP runs without it) until this works"
                    );
                    self.error = Some(e);
                }
            }
        }
    }
}

fn open_receiver(listen: Listen) -> std::io::Result<UdpSocket> {
    open_receiver_on(listen, listen.port())
}

/// [`open_receiver`] on any `port` (0: one the kernel picks), for tests.
fn open_receiver_on(listen: Listen, port: u16) -> std::io::Result<UdpSocket> {
    let (domain, any) = if listen.ipv6 {
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    } else {
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // No SO_REUSEADDR: another BFD daemon on this host holding the port
    // must be an error here, not a silent split of its packets.
    // Room for bursts (the kernel caps it at net.core.rmem_max).
    socket.set_recv_buffer_size(1 << 20)?;
    if listen.ipv6 {
        socket.set_only_v6(true)?;
        set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
    } else {
        set_int(&socket, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(any, port).into())?;
    UdpSocket::from_std(socket.into())
}

fn set_int(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: a valid descriptor and a c_int option of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One `recvmsg` with the TTL (IPv4) or hop limit (IPv6) from its control
/// message.
fn recv_with_ttl(socket: &UdpSocket, buffer: &mut [u8]) -> std::io::Result<Received> {
    // SAFETY: zeroed C structs are valid; the pointers handed to recvmsg
    // point at live locals of the sizes given; CMSG_* walk the control
    // buffer recvmsg filled, within msg_controllen.
    unsafe {
        let mut from: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: buffer.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = std::ptr::from_mut(&mut from).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ttl = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
            {
                let value = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                ttl = u8::try_from(value).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        let from = match i32::from(from.ss_family) {
            libc::AF_INET => {
                let sin = &*std::ptr::from_ref(&from).cast::<libc::sockaddr_in>();
                SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                    u16::from_be(sin.sin_port),
                )
            }
            libc::AF_INET6 => {
                let sin6 = &*std::ptr::from_ref(&from).cast::<libc::sockaddr_in6>();
                SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                    u16::from_be(sin6.sin6_port),
                )
            }
            _ => return Err(std::io::Error::other("unknown address family")),
        };
        Ok(Received {
            len: usize::try_from(n).unwrap_or(0),
            from,
            ttl,
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        })
    }
}

/// One peer's running session.
struct Live {
    peer: BfdPeer,
    session: BfdSession,
    /// Where packets to the peer leave from; opened (again) on demand.
    sender: Option<StdUdpSocket>,
    /// The last error sending, logged once per change.
    send_error: Option<String>,
}

impl Live {
    fn label(&self) -> String {
        self.peer.remote.to_string()
    }

    fn send(&mut self, packet: &ControlPacket) {
        if self.sender.is_none() {
            match open_sender(&self.peer) {
                Ok(socket) => self.sender = Some(socket),
                Err(e) => return self.send_failed(format!("cannot open a socket: {e}")),
            }
        }
        let Some(socket) = &self.sender else { return };
        let to = SocketAddr::new(self.peer.remote, self.peer.port());
        match socket.send_to(&packet.encode(), to) {
            Ok(_) => {
                if self.send_error.take().is_some() {
                    tracing::info!(peer = %self.label(), name = %self.peer.name, "sending BFD packets again");
                }
            }
            // A full socket buffer: this packet is lost, the next one goes
            // on time. Never wait here.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // The address may have gone: open afresh next time.
                self.sender = None;
                self.send_failed(e.to_string());
            }
        }
    }

    fn send_failed(&mut self, why: String) {
        if self.send_error.as_ref() != Some(&why) {
            metrics::backend_error("native", "bfd");
            tracing::warn!(peer = %self.label(), name = %self.peer.name, "cannot send BFD packets: {why}");
            self.send_error = Some(why);
        }
    }

    /// Carries out outputs, then publishes the view.
    fn carry_out(&mut self, outputs: Vec<BfdOutput>) {
        let (mut changes, mut downs) = (0, 0);
        for output in outputs {
            match output {
                BfdOutput::Send(packet) => self.send(&packet),
                BfdOutput::StateChanged { from, to, diag } => {
                    changes += 1;
                    downs += u64::from(from == BfdState::Up);
                    self.log_change(from, to, diag);
                }
            }
        }
        self.publish(changes, downs);
    }

    fn log_change(&self, from: BfdState, to: BfdState, diag: Diagnostic) {
        let (label, name) = (self.label(), &self.peer.name);
        match (from, to) {
            (_, BfdState::Up) => {
                let s = &self.peer.settings;
                tracing::info!(
                    peer = %label, name = %name,
                    "BFD session up (asking for min_tx {:?}, min_rx {:?}, multiplier {})",
                    s.min_tx, s.min_rx, s.multiplier
                )
            }
            (BfdState::Up, _) => tracing::warn!(
                peer = %label, name = %name, reason = %diag,
                "BFD session down: {diag}"
            ),
            _ => {
                tracing::debug!(peer = %label, name = %name, from = from.name(), to = to.name(), reason = %diag, "BFD session state")
            }
        }
    }

    fn publish(&self, changes: u64, downs: u64) {
        let state_changed = changes > 0;
        let session = &self.session;
        let label = self.label();
        let mut intervals_changed = false;
        let mut now_unanswered = false;
        self.peer.view.send_if_modified(|view| {
            let next = BfdView {
                state: session.state(),
                remote_state: session.remote_state(),
                diag: session.diag(),
                down_diag: session.down_diag(),
                path: session.path(),
                multihop: self.peer.multihop,
                tx_interval: session.tx_interval(),
                detection_time: session.detection_time(),
                changes: view.changes + changes,
                downs: view.downs + downs,
            };
            if *view == next {
                return false;
            }
            intervals_changed =
                view.tx_interval != next.tx_interval || view.detection_time != next.detection_time;
            now_unanswered =
                next.path == PathVerdict::Unanswered && view.path != PathVerdict::Unanswered;
            *view = next;
            true
        });
        if now_unanswered {
            self.log_unanswered();
        }
        let view = self.peer.view.borrow().clone();
        self.peer.reporter.update(&self.peer.name, |p| {
            p.bfd = Some(BfdStatus {
                state: view.state.name().into(),
                remote_state: view.remote_state.name().into(),
                path: match view.path {
                    PathVerdict::Up => "up",
                    PathVerdict::Waiting => "waiting",
                    PathVerdict::Down => "down",
                    PathVerdict::Unanswered => "unanswered",
                }
                .into(),
                last_down: view.down_diag.to_string(),
                multihop: view.multihop,
                tx_interval_ms: view.tx_interval.map(|d| d.as_secs_f64() * 1000.0),
                detection_time_ms: view.detection_time.map(|d| d.as_secs_f64() * 1000.0),
                changes: view.changes,
            });
        });
        if state_changed {
            let state = session.state();
            metrics::bfd_state(
                &label,
                &self.peer.router_id,
                state as u8,
                state.name(),
                true,
            );
        }
        if intervals_changed {
            metrics::bfd_intervals(
                &label,
                &self.peer.router_id,
                session.tx_interval().map(|d| d.as_secs_f64()),
                session.detection_time().map(|d| d.as_secs_f64()),
            );
        }
    }

    /// Says why BGP now runs without BFD, once per episode.
    fn log_unanswered(&self) {
        let (label, name) = (self.label(), &self.peer.name);
        if self.session.remote_state() == BfdState::AdminDown {
            tracing::info!(peer = %label, name = %name, "the peer said BFD AdminDown: BGP with it runs without BFD until BFD starts again");
        } else {
            tracing::warn!(
                peer = %label, name = %name,
                "no BFD packet from the peer (within {FIRST_ANSWER_WITHIN:?} of start, or for {SILENT_FOR:?}): BGP with it runs without BFD until it answers (is BFD configured on the router?)"
            );
        }
    }
}

/// A socket bound to a free source port in 49152–65535 (RFC 5881 §4),
/// sending with TTL 255 (RFC 5881 §5, RFC 5883 §2 leaves it to us).
fn open_sender(peer: &BfdPeer) -> std::io::Result<StdUdpSocket> {
    let ipv6 = peer.remote.is_ipv6();
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if ipv6 {
        socket.set_only_v6(true)?;
        socket.set_unicast_hops_v6(255)?;
    } else {
        socket.set_ttl_v4(255)?;
    }
    socket.set_nonblocking(true)?;
    let local = peer.local.unwrap_or(if ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    let span = u64::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let mut seed = std::collections::hash_map::RandomState::new().hash_one(peer.remote);
    let mut last = None;
    for _ in 0..64 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let port = SOURCE_PORTS.start() + u16::try_from((seed >> 33) % span).unwrap_or(0);
        match socket.bind(&SocketAddr::new(local, port).into()) {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free source port")))
}

/// Received datagrams handled per wakeup at most.
const RECEIVE_BATCH: usize = 64;

/// Why a received datagram was dropped (the metric's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    Malformed,
    Authentication,
    Ttl,
    UnknownPeer,
}

/// Which session a received datagram is for, decided with no I/O: the
/// checks of RFC 5881 §5 and RFC 5880 §6.8.6 that need the socket's view
/// (TTL, source), then the session by Your Discriminator, else by source.
struct Demux {
    by_discriminator: HashMap<u32, usize>,
    /// Each session's peer address and whether it is multihop, by index.
    peers: Vec<(IpAddr, bool)>,
}

impl Demux {
    fn route(
        &self,
        multihop: bool,
        got: &Received,
        datagram: &[u8],
    ) -> Result<(usize, ControlPacket), Dropped> {
        if got.truncated {
            return Err(Dropped::Malformed);
        }
        // RFC 5881 §5: single-hop packets must arrive with TTL 255, so no
        // packet from further away passes as the neighbour's.
        if !multihop && got.ttl != Some(255) {
            return Err(Dropped::Ttl);
        }
        let packet = ControlPacket::decode(datagram).map_err(|e| match e {
            DecodeError::Authenticated => Dropped::Authentication,
            _ => Dropped::Malformed,
        })?;
        let source = (got.from.ip(), multihop);
        let index = if packet.your_discriminator != 0 {
            self.by_discriminator
                .get(&packet.your_discriminator)
                .copied()
        } else {
            self.peers.iter().position(|peer| *peer == source)
        };
        // The discriminator must also belong to the peer it came from.
        match index {
            Some(i) if self.peers[i] == source => Ok((i, packet)),
            _ => Err(Dropped::UnknownPeer),
        }
    }
}

/// The drop counters, looked up once: a flood costs an increment per
/// packet, not a registry lookup. Drops are counted, never logged: a flood
/// must not turn into a flood of log lines.
struct Drops {
    malformed: metrics::BfdDropCounter,
    authentication: metrics::BfdDropCounter,
    ttl: metrics::BfdDropCounter,
    unknown_peer: metrics::BfdDropCounter,
}

impl Drops {
    fn new() -> Drops {
        Drops {
            malformed: metrics::bfd_drop_counter("malformed"),
            authentication: metrics::bfd_drop_counter("authentication"),
            ttl: metrics::bfd_drop_counter("ttl"),
            unknown_peer: metrics::bfd_drop_counter("unknown_peer"),
        }
    }

    fn count(&self, why: Dropped) {
        match why {
            Dropped::Malformed => &self.malformed,
            Dropped::Authentication => &self.authentication,
            Dropped::Ttl => &self.ttl,
            Dropped::UnknownPeer => &self.unknown_peer,
        }
        .increment(1);
    }
}

async fn serve(peers: &[BfdPeer], shutdown: CancellationToken) {
    let start = Instant::now();
    let random = std::collections::hash_map::RandomState::new();
    let mut sessions: Vec<Live> = Vec::with_capacity(peers.len());
    let mut by_discriminator = HashMap::new();
    for (index, peer) in peers.iter().enumerate() {
        // Non-zero and unique: a random base, the index in the low bits.
        let base = u32::try_from(random.hash_one(peer.remote) & 0xffff_0000).unwrap_or(0x1_0000);
        let discriminator = (base | 0x1_0000) + u32::try_from(index).unwrap_or(0) + 1;
        by_discriminator.insert(discriminator, index);
        let timers = BfdTimers {
            min_tx: peer.settings.min_tx,
            min_rx: peer.settings.min_rx,
            multiplier: peer.settings.multiplier,
        };
        let seed = random.hash_one((peer.remote, index));
        let live = Live {
            peer: peer.clone(),
            session: BfdSession::new(timers, discriminator, seed, start),
            sender: None,
            send_error: None,
        };
        metrics::bfd_state(
            &live.label(),
            &peer.router_id,
            BfdState::Down as u8,
            "down",
            false,
        );
        live.publish(0, 0);
        sessions.push(live);
    }
    let demux = Demux {
        by_discriminator,
        peers: peers.iter().map(|p| (p.remote, p.multihop)).collect(),
    };
    let drops = Drops::new();
    // One per family and port; only those some peer uses are opened.
    let [mut r0, mut r1, mut r2, mut r3] = Listen::ALL.map(|listen| Receiver {
        listen,
        wanted: peers.iter().any(|p| Listen::of(p) == listen),
        socket: None,
        error: None,
        buffer: [0; 128],
    });
    let mut reopen_at = start;

    loop {
        let now = Instant::now();
        if now >= reopen_at {
            for r in [&mut r0, &mut r1, &mut r2, &mut r3] {
                r.open();
            }
            reopen_at = now + REOPEN_EVERY;
        }
        let next = sessions
            .iter()
            .filter_map(|s| s.session.next_deadline())
            .min()
            .unwrap_or(reopen_at)
            .min(reopen_at);
        let received = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {
                let now = Instant::now();
                for live in &mut sessions {
                    if live.session.next_deadline().is_some_and(|at| at <= now) {
                        let outputs = live.session.on_timer(now);
                        live.carry_out(outputs);
                    }
                }
                continue;
            }
            r = r0.recv() => (0, r),
            r = r1.recv() => (1, r),
            r = r2.recv() => (2, r),
            r = r3.recv() => (3, r),
        };
        let (index, result) = received;
        let receiver = [&mut r0, &mut r1, &mut r2, &mut r3]
            .into_iter()
            .nth(index)
            .expect("one of four");
        let mut got = match result {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("BFD receive failed: {e}");
                continue;
            }
        };
        // Read what is queued in one go (bounded), then back to the
        // timers: fewer wakeups under a flood, and transmissions still
        // come first at the next turn.
        for _ in 0..RECEIVE_BATCH {
            let datagram = &receiver.buffer[..got.len];
            match demux.route(receiver.listen.multihop, &got, datagram) {
                Ok((i, packet)) => {
                    let live = &mut sessions[i];
                    let outputs = live.session.on_packet(&packet, Instant::now());
                    live.carry_out(outputs);
                }
                Err(why) => drops.count(why),
            }
            match receiver.try_recv() {
                Ok(next) => got = next,
                Err(_) => break,
            }
        }
    }

    // Shutdown: AdminDown (RFC 5880 §6.8.16) tells the router this is not
    // a failure (sent with the state change). Once: the router removes the
    // session at the first, and a lost one leaves it to detect the silence.
    let now = Instant::now();
    for live in &mut sessions {
        let (outputs, _) = live.session.shut_down(now);
        live.carry_out(outputs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(from: &str, ttl: Option<u8>) -> Received {
        Received {
            len: 24,
            from: SocketAddr::new(from.parse().unwrap(), 49152),
            ttl,
            truncated: false,
        }
    }

    fn control(your_discriminator: u32, state: BfdState) -> [u8; 24] {
        ControlPacket {
            diag: Diagnostic::None,
            state,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 9,
            your_discriminator,
            desired_min_tx_us: 100_000,
            required_min_rx_us: 100_000,
            required_min_echo_rx_us: 0,
        }
        .encode()
    }

    /// The demultiplexer's decisions, one by one: TTL 255 for single hop
    /// only, decode errors, Your Discriminator first and it must belong to
    /// the source, else the source address; a flood of any of these costs
    /// a counter and no state.
    #[test]
    fn datagrams_go_to_their_session_or_are_dropped_with_a_reason() {
        let demux = Demux {
            by_discriminator: [(0x1_0001, 0), (0x1_0002, 1)].into(),
            peers: vec![
                ("192.0.2.1".parse().unwrap(), false),
                ("192.0.2.2".parse().unwrap(), true),
            ],
        };
        let up = control(0x1_0001, BfdState::Up);
        let down = control(0, BfdState::Down);
        let single = |from, ttl, bytes: &[u8]| demux.route(false, &received(from, ttl), bytes);
        assert_eq!(single("192.0.2.1", Some(255), &up).map(|r| r.0), Ok(0));
        assert_eq!(
            single("192.0.2.1", Some(255), &down).map(|r| r.0),
            Ok(0),
            "by source"
        );
        assert_eq!(single("192.0.2.1", Some(254), &up), Err(Dropped::Ttl));
        assert_eq!(single("192.0.2.1", None, &up), Err(Dropped::Ttl));
        assert_eq!(
            single("192.0.2.1", Some(255), &up[..20]),
            Err(Dropped::Malformed)
        );
        let mut auth = up.to_vec();
        auth[1] |= 0x04;
        auth[3] = 26;
        auth.extend([1, 2]);
        assert_eq!(
            single("192.0.2.1", Some(255), &auth),
            Err(Dropped::Authentication)
        );
        let mut truncated = received("192.0.2.1", Some(255));
        truncated.truncated = true;
        assert_eq!(demux.route(false, &truncated, &up), Err(Dropped::Malformed));
        // Unknown discriminator, unknown source, or a discriminator that
        // is another peer's.
        assert_eq!(
            single("192.0.2.1", Some(255), &control(7, BfdState::Up)),
            Err(Dropped::UnknownPeer)
        );
        assert_eq!(
            single("192.0.2.9", Some(255), &down),
            Err(Dropped::UnknownPeer)
        );
        assert_eq!(
            single("192.0.2.2", Some(255), &control(0x1_0001, BfdState::Up)),
            Err(Dropped::UnknownPeer)
        );
        // Multihop: any TTL, but only from a multihop peer.
        let multi =
            |from, ttl| demux.route(true, &received(from, ttl), &control(0x1_0002, BfdState::Up));
        assert_eq!(multi("192.0.2.2", Some(60)).map(|r| r.0), Ok(1));
        assert_eq!(multi("192.0.2.1", Some(255)), Err(Dropped::UnknownPeer));
    }

    /// A socket on `from` (port 0) sending with TTL / hop limit `ttl`.
    fn sender(from: IpAddr, ttl: u32) -> StdUdpSocket {
        let domain = if from.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        if from.is_ipv6() {
            socket.set_unicast_hops_v6(ttl).unwrap();
        } else {
            socket.set_ttl_v4(ttl).unwrap();
        }
        socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
        socket.into()
    }

    async fn receive(socket: &UdpSocket, buffer: &mut [u8]) -> Received {
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            socket.async_io(Interest::READABLE, || recv_with_ttl(socket, buffer)),
        )
        .await;
        got.expect("a datagram within 5 s").expect("recvmsg")
    }

    /// The receiver reports each datagram's TTL (hop limit) as it came
    /// (loopback does not decrement it), its source and length, and
    /// whether it was cut short.
    async fn reads_ttl(loopback: IpAddr) {
        let listen = Listen {
            ipv6: loopback.is_ipv6(),
            multihop: false,
        };
        let receiver = open_receiver_on(listen, 0).expect("open a receiver");
        let port = receiver.local_addr().unwrap().port();
        assert_ne!(port, 0);
        let to = SocketAddr::new(loopback, port);
        let mut buffer = [0u8; 128];
        for (ttl, len) in [(255, 24), (254, 52), (1, 1)] {
            let socket = sender(loopback, ttl);
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            socket.send_to(&payload, to).unwrap();
            let got = receive(&receiver, &mut buffer).await;
            assert_eq!(got.ttl, Some(ttl as u8), "{loopback}: TTL {ttl}");
            assert_eq!(got.from, socket.local_addr().unwrap(), "{loopback}");
            assert_eq!(got.len, len, "{loopback}");
            assert!(!got.truncated, "{loopback}: {len} bytes fit");
            assert_eq!(&buffer[..len], &payload[..], "{loopback}");
        }
        // Larger than the buffer: cut to its size, and said so.
        let socket = sender(loopback, 255);
        socket.send_to(&[0xa5; 200], to).unwrap();
        let got = receive(&receiver, &mut buffer).await;
        assert!(got.truncated, "{loopback}: 200 bytes into 128");
        assert_eq!(got.len, buffer.len(), "{loopback}");
        assert_eq!(got.ttl, Some(255), "{loopback}");
        assert_eq!(got.from, socket.local_addr().unwrap(), "{loopback}");
    }

    #[tokio::test]
    async fn reads_the_ttl_of_ipv4_datagrams() {
        reads_ttl(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    }

    #[tokio::test]
    async fn reads_the_hop_limit_of_ipv6_datagrams() {
        reads_ttl(IpAddr::V6(Ipv6Addr::LOCALHOST)).await;
    }
}
