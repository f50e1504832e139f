//! `listening`: a local socket listens on a port — TCP in LISTEN state, or a
//! bound (unconnected) UDP socket — optionally on a given local address.
//!
//! One poller thread per process reads the kernel's socket tables through
//! NETLINK_SOCK_DIAG every [`POLL`] for all `listening` checks at once (one
//! dump per family and protocol in use, not one per check) and wakes a
//! check when its answer changes: when a daemon crashes its listening socket
//! vanishes, and the service's round runs within one poll. An attempt only
//! reads the poller's latest table; when the poller has no fresh table (no
//! sock_diag, a failed dump) the attempt dumps the table itself, and fails
//! if it cannot: never healthy without data.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};
use tokio::sync::Notify;

use super::{AttemptFuture, Check};
use crate::config::model::{ListenProtocol, ListeningSpec};

/// How often the poller reads the socket tables.
pub const POLL: Duration = Duration::from_millis(30);
/// A table older than this is no answer: the attempt dumps one itself.
const FRESH: Duration = Duration::from_secs(1);

pub struct Listening {
    want: Want,
    subscription: Arc<Subscription>,
    /// The poller this check subscribed to, once; `None` without sock_diag.
    poller: OnceLock<Option<Arc<Poller>>>,
}

/// What a check looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Want {
    protocol: ListenProtocol,
    port: u16,
    address: Option<IpAddr>,
}

/// A listening socket's local end, as sock_diag reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Bound {
    pub address: IpAddr,
    pub port: u16,
    /// An IPv6 socket that takes no IPv4 (IPV6_V6ONLY).
    pub v6only: bool,
}

impl Want {
    /// Whether `bound` serves this want: the port, and the address itself
    /// or a wildcard that covers it (`::` covers IPv4 unless v6only).
    fn served_by(&self, bound: &Bound) -> bool {
        if bound.port != self.port {
            return false;
        }
        let Some(wanted) = self.address else {
            return true;
        };
        match (wanted, bound.address) {
            (_, b) if b == wanted => true,
            (IpAddr::V4(w), IpAddr::V4(b)) => b.is_unspecified() || b == w,
            (IpAddr::V4(w), IpAddr::V6(b)) => {
                (b.is_unspecified() && !bound.v6only) || b.to_ipv4_mapped() == Some(w)
            }
            (IpAddr::V6(_), IpAddr::V6(b)) => b.is_unspecified(),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    fn judge(&self, table: &[Bound]) -> Result<(), String> {
        if table.iter().any(|b| self.served_by(b)) {
            return Ok(());
        }
        let what = match self.protocol {
            ListenProtocol::Tcp => "listening",
            ListenProtocol::Udp => "bound",
        };
        Err(match self.address {
            Some(address) => format!(
                "no {} socket {what} on {}",
                self.protocol.as_str(),
                std::net::SocketAddr::new(address, self.port)
            ),
            None => format!(
                "no {} socket {what} on port {}",
                self.protocol.as_str(),
                self.port
            ),
        })
    }
}

impl Listening {
    pub fn new(spec: &ListeningSpec) -> Listening {
        Listening {
            want: Want {
                protocol: spec.protocol,
                port: spec.port,
                address: spec.address,
            },
            subscription: Arc::new(Subscription {
                protocol: spec.protocol,
                want: Want {
                    protocol: spec.protocol,
                    port: spec.port,
                    address: spec.address,
                },
                wakeup: Arc::new(Notify::new()),
                last: AtomicU8::new(UNKNOWN),
            }),
            poller: OnceLock::new(),
        }
    }

    fn poller(&self) -> Option<&Arc<Poller>> {
        self.poller
            .get_or_init(|| subscribe(&self.subscription))
            .as_ref()
    }
}

impl Check for Listening {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            if let Some(verdict) = self
                .poller()
                .and_then(|p| p.judge(&self.want, self.want.protocol))
            {
                return verdict;
            }
            // No fresh table from the poller: read one now.
            let mut diag = Diag::open().map_err(|e| format!("cannot open sock_diag: {e}"))?;
            let table = diag
                .dump(self.want.protocol)
                .map_err(|e| format!("cannot read listening sockets: {e}"))?;
            self.want.judge(&table)
        })
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        self.poller().map(|_| self.subscription.wakeup.clone())
    }
}

const UNKNOWN: u8 = 0;
const SERVED: u8 = 1;
const NOT_SERVED: u8 = 2;

/// A check as the poller knows it: what it wants, whom to wake, and the
/// answer it had at the last poll.
struct Subscription {
    protocol: ListenProtocol,
    want: Want,
    wakeup: Arc<Notify>,
    last: AtomicU8,
}

/// The process's one sock_diag poller, shared by every `listening` check.
/// It holds its checks weakly and ends, closing its socket, once none is
/// left; the next check starts a new one.
pub(crate) struct Poller {
    state: Mutex<PollerState>,
}

struct PollerState {
    /// False once the thread has decided to end.
    alive: bool,
    subscriptions: Vec<Weak<Subscription>>,
    tcp: Option<Table>,
    udp: Option<Table>,
}

struct Table {
    sockets: Vec<Bound>,
    at: Instant,
}

static POLLER: Mutex<Weak<Poller>> = Mutex::new(Weak::new());
/// Set once sock_diag could not be had: the poller is not tried again.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds `subscription` to the poller, starting it if needed.
fn subscribe(subscription: &Arc<Subscription>) -> Option<Arc<Poller>> {
    if UNAVAILABLE.load(Ordering::Relaxed) {
        return None;
    }
    let mut current = lock(&POLLER);
    if let Some(poller) = current.upgrade() {
        let mut state = lock(&poller.state);
        if state.alive {
            state.subscriptions.push(Arc::downgrade(subscription));
            drop(state);
            return Some(poller);
        }
    }
    let poller = Arc::new(Poller {
        state: Mutex::new(PollerState {
            alive: true,
            subscriptions: vec![Arc::downgrade(subscription)],
            tcp: None,
            udp: None,
        }),
    });
    let started = Diag::open().and_then(|diag| {
        let poller = poller.clone();
        std::thread::Builder::new()
            .name("anycastd-sockdiag".into())
            .spawn(move || poll(diag, poller))
    });
    match started {
        Ok(_) => {
            *current = Arc::downgrade(&poller);
            Some(poller)
        }
        Err(e) => {
            if !UNAVAILABLE.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot open sock_diag; each listening check reads the socket table itself");
            }
            None
        }
    }
}

impl Poller {
    /// The verdict from the latest table, or `None` without a fresh one.
    fn judge(&self, want: &Want, protocol: ListenProtocol) -> Option<Result<(), String>> {
        let state = lock(&self.state);
        let table = match protocol {
            ListenProtocol::Tcp => state.tcp.as_ref(),
            ListenProtocol::Udp => state.udp.as_ref(),
        }?;
        (state.alive && table.at.elapsed() <= FRESH).then(|| want.judge(&table.sockets))
    }
}

/// The poller thread: dumps the tables its checks need every [`POLL`] and
/// wakes each check whose answer changed.
fn poll(mut diag: Diag, poller: Arc<Poller>) {
    let mut failing = false;
    loop {
        let started = Instant::now();
        let (tcp, udp) = {
            let mut state = lock(&poller.state);
            state.subscriptions.retain(|s| s.strong_count() > 0);
            if state.subscriptions.is_empty() {
                state.alive = false;
                return;
            }
            let live = state.subscriptions.iter().filter_map(Weak::upgrade);
            let (mut tcp, mut udp) = (false, false);
            for s in live {
                match s.protocol {
                    ListenProtocol::Tcp => tcp = true,
                    ListenProtocol::Udp => udp = true,
                }
            }
            (tcp, udp)
        };
        let mut results = Vec::with_capacity(2);
        for (needed, protocol) in [(tcp, ListenProtocol::Tcp), (udp, ListenProtocol::Udp)] {
            if needed {
                results.push((protocol, diag.dump(protocol)));
            }
        }
        let now = Instant::now();
        let mut guard = lock(&poller.state);
        let PollerState {
            tcp,
            udp,
            subscriptions,
            ..
        } = &mut *guard;
        for (protocol, result) in results {
            let slot = match protocol {
                ListenProtocol::Tcp => &mut *tcp,
                ListenProtocol::Udp => &mut *udp,
            };
            let changed = match result {
                Ok(sockets) => {
                    failing = false;
                    match slot {
                        Some(table) if table.sockets == sockets => {
                            table.at = now;
                            false
                        }
                        _ => {
                            *slot = Some(Table { sockets, at: now });
                            true
                        }
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "sock_diag dump failed; listening checks read the table themselves");
                    }
                    failing = true;
                    *slot = None;
                    true
                }
            };
            if !changed {
                continue;
            }
            let table = slot.as_ref().map(|t| t.sockets.as_slice());
            for s in subscriptions.iter().filter_map(Weak::upgrade) {
                if s.protocol != protocol {
                    continue;
                }
                let answer = match table {
                    Some(t) if s.want.judge(t).is_ok() => SERVED,
                    Some(_) => NOT_SERVED,
                    None => UNKNOWN,
                };
                let before = s.last.swap(answer, Ordering::Relaxed);
                if before != answer && (before != UNKNOWN || answer == NOT_SERVED) {
                    s.wakeup.notify_one();
                }
            }
        }
        drop(guard);
        if let Some(rest) = POLL.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// A sock_diag socket and its buffers.
pub(crate) struct Diag {
    socket: Socket,
    buffer: Vec<u8>,
    request: Vec<u8>,
    sequence: u32,
}

impl Diag {
    pub(crate) fn open() -> std::io::Result<Diag> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        // A dump never waits on anything outside the kernel; this bounds a
        // surprise so a check's attempt cannot block a runtime thread long.
        super::set_receive_timeout(&socket, Duration::from_millis(500))?;
        Ok(Diag {
            socket,
            buffer: vec![0; 64 * 1024],
            request: Vec::new(),
            sequence: 0,
        })
    }

    /// Every listening TCP socket, or every unconnected UDP socket, of both
    /// families, sorted.
    pub(crate) fn dump(&mut self, protocol: ListenProtocol) -> std::io::Result<Vec<Bound>> {
        let mut sockets = Vec::new();
        for family in [AF_INET, AF_INET6] {
            self.dump_family(protocol, family, &mut sockets)?;
        }
        sockets.sort_unstable();
        sockets.dedup();
        Ok(sockets)
    }

    fn dump_family(
        &mut self,
        protocol: ListenProtocol,
        family: u8,
        out: &mut Vec<Bound>,
    ) -> std::io::Result<()> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = sequence;
        let (ip_protocol, states) = match protocol {
            ListenProtocol::Tcp => (IPPROTO_TCP, StateFlags::LISTEN),
            // A bound UDP socket that is not connected shows as TCP_CLOSE.
            ListenProtocol::Udp => (IPPROTO_UDP, StateFlags::CLOSE),
        };
        let mut packet = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: ip_protocol,
                extensions: ExtensionFlags::empty(),
                states,
                socket_id: if family == AF_INET {
                    SocketId::new_v4()
                } else {
                    SocketId::new_v6()
                },
            })
            .into(),
        );
        packet.finalize();
        self.request.resize(packet.buffer_len(), 0);
        packet.serialize(&mut self.request[..]);
        self.socket.send(&self.request, 0)?;
        loop {
            let size = self.socket.recv(&mut &mut self.buffer[..], 0)?;
            if parse(&self.buffer[..size], sequence, out)? {
                return Ok(());
            }
        }
    }
}

/// Netlink message types (linux/netlink.h, linux/sock_diag.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct nlmsghdr` and `struct inet_diag_msg`.
const NLMSG_HEADER: usize = 16;
const INET_DIAG_MSG: usize = 72;
/// The attribute holding IPV6_V6ONLY (linux/inet_diag.h).
const INET_DIAG_SKV6ONLY: u16 = 11;

/// Parses one datagram of a dump into `out`; true once the dump is done.
/// Messages of another sequence (an earlier, abandoned dump) are skipped.
///
/// Walked by hand rather than through netlink-packet-sock-diag's decoder:
/// the poller reads every listening socket of the host 50 times a second,
/// and only the local address, port and IPV6_V6ONLY matter; this walk
/// allocates nothing per socket (measured: half the poller's CPU).
pub(crate) fn parse(
    mut bytes: &[u8],
    sequence: u32,
    out: &mut Vec<Bound>,
) -> std::io::Result<bool> {
    let invalid = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad sock_diag message: {what}"),
        )
    };
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    while !bytes.is_empty() {
        if bytes.len() < NLMSG_HEADER {
            return Err(invalid("truncated header"));
        }
        let length = u32_at(bytes, 0) as usize;
        if length < NLMSG_HEADER || length > bytes.len() {
            return Err(invalid(&format!("length {length}")));
        }
        let kind = u16_at(bytes, 4);
        let message_sequence = u32_at(bytes, 8);
        let body = &bytes[NLMSG_HEADER..length];
        // Messages are aligned to 4 bytes.
        bytes = &bytes[length.next_multiple_of(4).min(bytes.len())..];
        if message_sequence != sequence {
            continue;
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = if body.len() >= 4 {
                    i32::from_ne_bytes([body[0], body[1], body[2], body[3]])
                } else {
                    0
                };
                if code != 0 {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                if body.len() < INET_DIAG_MSG {
                    return Err(invalid("truncated inet_diag_msg"));
                }
                let port = u16::from_be_bytes([body[4], body[5]]);
                let source: [u8; 16] = body[8..24].try_into().expect("16 bytes");
                let address = match body[0] {
                    AF_INET => IpAddr::from([source[0], source[1], source[2], source[3]]),
                    AF_INET6 => IpAddr::from(source),
                    _ => continue,
                };
                let mut v6only = false;
                let mut attributes = &body[INET_DIAG_MSG..];
                while attributes.len() >= 4 {
                    let length = usize::from(u16_at(attributes, 0));
                    if length < 4 || length > attributes.len() {
                        break;
                    }
                    if u16_at(attributes, 2) == INET_DIAG_SKV6ONLY && length > 4 {
                        v6only = attributes[4] != 0;
                    }
                    attributes = &attributes[length.next_multiple_of(4).min(attributes.len())..];
                }
                out.push(Bound {
                    address,
                    port,
                    v6only,
                });
            }
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn bound(address: &str, port: u16, v6only: bool) -> Bound {
        Bound {
            address: address.parse().unwrap(),
            port,
            v6only,
        }
    }

    fn want(port: u16, address: Option<&str>) -> Want {
        Want {
            protocol: ListenProtocol::Tcp,
            port,
            address: address.map(|a| a.parse().unwrap()),
        }
    }

    #[test]
    fn wildcards_cover_their_family_and_dual_stack_covers_ipv4() {
        let any4 = [bound("0.0.0.0", 80, false)];
        let any6 = [bound("::", 80, false)];
        let any6_only = [bound("::", 80, true)];
        let mapped = [bound("::ffff:192.0.2.1", 80, false)];
        let one = [bound("192.0.2.1", 80, false)];
        assert!(want(80, None).judge(&any4).is_ok());
        assert!(want(80, Some("192.0.2.1")).judge(&any4).is_ok());
        assert!(want(80, Some("2001:db8::1")).judge(&any4).is_err());
        assert!(want(80, Some("192.0.2.1")).judge(&any6).is_ok());
        assert!(want(80, Some("2001:db8::1")).judge(&any6).is_ok());
        assert!(want(80, Some("192.0.2.1")).judge(&any6_only).is_err());
        assert!(want(80, Some("192.0.2.1")).judge(&mapped).is_ok());
        assert!(want(80, Some("192.0.2.1")).judge(&one).is_ok());
        assert_eq!(
            want(80, Some("192.0.2.2")).judge(&one),
            Err("no tcp socket listening on 192.0.2.2:80".into())
        );
        assert_eq!(
            want(81, None).judge(&one),
            Err("no tcp socket listening on port 81".into())
        );
        let udp = Want {
            protocol: ListenProtocol::Udp,
            port: 53,
            address: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        };
        assert_eq!(
            udp.judge(&one),
            Err("no udp socket bound on [::1]:53".into())
        );
    }

    /// A dump as the kernel sends it: two responses and the end, in one
    /// datagram, plus a message of an older dump that must be skipped.
    #[test]
    fn parses_a_dump_datagram() {
        fn response(
            sequence: u32,
            family: u8,
            address: IpAddr,
            port: u16,
            v6only: Option<bool>,
        ) -> Vec<u8> {
            // inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid
            // (sport, dport big-endian; src, dst 16 bytes each; if; cookie),
            // expires, rqueue, wqueue, uid, inode: 72 bytes.
            let mut body = vec![family, 10, 0, 0];
            body.extend_from_slice(&port.to_be_bytes());
            body.extend_from_slice(&0u16.to_be_bytes());
            let mut src = [0u8; 16];
            match address {
                IpAddr::V4(a) => src[..4].copy_from_slice(&a.octets()),
                IpAddr::V6(a) => src.copy_from_slice(&a.octets()),
            }
            body.extend_from_slice(&src);
            body.extend_from_slice(&[0u8; 16]);
            body.extend_from_slice(&[0u8; 4 + 8]);
            body.extend_from_slice(&[0u8; 20]);
            assert_eq!(body.len(), 72);
            if let Some(v6only) = v6only {
                // INET_DIAG_SKV6ONLY (11), one byte, padded to 8.
                body.extend_from_slice(&5u16.to_ne_bytes());
                body.extend_from_slice(&11u16.to_ne_bytes());
                body.extend_from_slice(&[u8::from(v6only), 0, 0, 0]);
            }
            message(20, sequence, &body)
        }
        fn message(kind: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
            let mut m = Vec::new();
            m.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
            m.extend_from_slice(&sequence.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(body);
            m
        }
        let mut datagram = response(6, AF_INET, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 99, None);
        datagram.extend(response(
            7,
            AF_INET,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            80,
            None,
        ));
        datagram.extend(response(
            7,
            AF_INET6,
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            443,
            Some(true),
        ));
        let mut out = Vec::new();
        assert!(!parse(&datagram, 7, &mut out).unwrap());
        datagram.extend(message(3, 7, &0i32.to_ne_bytes())); // NLMSG_DONE
        out.clear();
        assert!(parse(&datagram, 7, &mut out).unwrap());
        assert_eq!(
            out,
            [bound("192.0.2.1", 80, false), bound("::", 443, true),]
        );
        // An error ends the dump with the kernel's errno.
        let mut error = (-libc::EPERM).to_ne_bytes().to_vec();
        error.extend_from_slice(&[0u8; 16]);
        let err = parse(&message(2, 7, &error), 7, &mut out).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    }

    /// Against this host's real table: a listener appears within polls and
    /// its check is woken when it goes.
    #[tokio::test]
    async fn sees_a_real_listener_come_and_go() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let check = Listening::new(&ListeningSpec {
            port,
            protocol: ListenProtocol::Tcp,
            address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        });
        if Diag::open().is_err() {
            // No sock_diag here: the attempt must fail, never pass blind.
            assert!(check.attempt().await.is_err());
            return;
        }
        assert_eq!(check.attempt().await, Ok(()));
        let wakeup = check.wakeups().expect("a poller");
        // Let the poller learn the listener before it goes.
        tokio::time::sleep(POLL * 3).await;
        drop(listener);
        tokio::time::timeout(Duration::from_secs(2), wakeup.notified())
            .await
            .expect("woken when the listener goes");
        assert!(check.attempt().await.is_err());
        let udp = Listening::new(&ListeningSpec {
            port,
            protocol: ListenProtocol::Udp,
            address: None,
        });
        let socket = std::net::UdpSocket::bind(("::", port)).unwrap();
        assert_eq!(udp.attempt().await, Ok(()));
        drop(socket);
    }
}
