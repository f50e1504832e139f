//! `icmp_ping`: one run of `tries` echo requests, `interval` apart, inside
//! the check's `timeout`; it passes only if every request got its reply.
//!
//! Sockets: one surge-ping client per address family, opened on first use
//! and shared by every icmp_ping check (thousands of checks, two sockets).
//! A datagram ("ping") socket is tried first, as it needs no privilege where
//! `net.ipv4.ping_group_range` admits our group; otherwise a raw socket, which
//! needs root or CAP_NET_RAW. Requests are told apart by a process-wide
//! sequence number (datagram sockets: the kernel owns the identifier) and, on
//! raw sockets, by an identifier per check.
//!
//! The engine makes one attempt bounded by `timeout` and drops it when that
//! passes; every wait here ends a little earlier so the run can still be
//! judged and its metrics recorded. Dropping the attempt early is safe:
//! surge-ping unregisters a pending request when its future is dropped.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use socket2::{Domain, Protocol, Socket, Type};
use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier, PingSequence, SurgeError};
use tokio::time::Instant;

use super::{AttemptFuture, AttemptResult, BuildError, Check, CheckLabels};
use crate::config::format_duration;
use crate::config::model::IcmpPingSpec;
use crate::metrics::{self, PingStats};

/// The echo request payload: 32 bytes, recognisable in a packet capture.
const PAYLOAD: &[u8; 32] = b"anycastd icmp_ping health check.";
/// Replies are awaited until this long before the engine's timeout, at most.
const MAX_MARGIN: Duration = Duration::from_millis(100);
const GROUP_RANGE_FILE: &str = "/proc/sys/net/ipv4/ping_group_range";
/// Echo requests leave at most this fast, all checks together, with bursts
/// of [`SEND_BURST`]. Every reply lands in the one shared socket's receive
/// buffer (a raw socket also sees every other ICMP packet, and on loopback
/// the requests too); surge-ping offers no way to enlarge it, and a burst of
/// thousands of checks starting together overflowed it in tests, which
/// showed up as lost replies.
const SEND_RATE_PER_SECOND: u32 = 10_000;
const SEND_BURST: u32 = 32;

pub struct IcmpPing {
    /// As configured: an IP literal or a DNS name; the `host` label.
    host: String,
    /// Set when `host` is an IP literal: no resolution needed.
    literal: Option<IpAddr>,
    tries: u8,
    interval: Duration,
    timeout: Duration,
    ident: PingIdentifier,
    labels: CheckLabels,
}

impl IcmpPing {
    pub fn new(spec: &IcmpPingSpec, labels: &CheckLabels) -> Result<IcmpPing, BuildError> {
        let host = spec.target.host.trim().to_string();
        if host.is_empty() {
            return Err(BuildError::Invalid("static.host must not be empty".into()));
        }
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let check = IcmpPing {
            host,
            literal,
            tries: spec.tries.max(1),
            interval: spec.interval.get(),
            timeout: spec.timeout.get(),
            ident: next_identifier(),
            labels: labels.clone(),
        };
        let last_due = check.interval * u32::from(check.tries - 1);
        if last_due >= reply_deadline(check.timeout) {
            tracing::warn!(
                service = %labels.service,
                check = %labels.check,
                "icmp_ping sends {} echo requests {} apart, but its timeout {} ends before the last is due: the check cannot pass",
                check.tries,
                format_duration(check.interval),
                format_duration(check.timeout),
            );
        }
        Ok(check)
    }

    async fn run(&self, started: Instant) -> AttemptResult {
        let deadline = started + reply_deadline(self.timeout);
        let (address, scope_id) = self.resolve(deadline).await?;
        let target = match self.literal {
            Some(_) => address.to_string(),
            None => format!("{} ({address})", self.host),
        };
        let client = shared_client(address.is_ipv6())?;
        let first = Instant::now();
        let echoes = (0..u32::from(self.tries)).map(|i| {
            echo(
                &client,
                (address, scope_id),
                self.ident,
                first + self.interval * i,
                deadline,
            )
        });
        let outcomes = join_all(echoes).await;
        let rtts: Vec<Duration> = outcomes
            .iter()
            .filter_map(|o| match o {
                Echo::Reply(rtt) => Some(*rtt),
                _ => None,
            })
            .collect();
        let sent = outcomes.iter().filter(|o| o.was_sent()).count();
        metrics::ping_run(&self.labels, &self.host, &statistics(sent, &rtts, 0));
        verdict(&target, &outcomes, self.interval, self.timeout)
    }

    /// The address to ping and, for IPv6 link-local names such as
    /// `fe80::1%eth0`, its scope (interface index).
    async fn resolve(&self, deadline: Instant) -> Result<(IpAddr, u32), String> {
        if let Some(ip) = self.literal {
            return Ok((ip, 0));
        }
        let lookup = tokio::net::lookup_host((self.host.as_str(), 0));
        match tokio::time::timeout_at(deadline, lookup).await {
            Ok(Ok(mut addresses)) => addresses
                .next()
                .map(|a| match a {
                    SocketAddr::V4(v4) => (IpAddr::V4(*v4.ip()), 0),
                    SocketAddr::V6(v6) => (IpAddr::V6(*v6.ip()), v6.scope_id()),
                })
                .ok_or_else(|| format!("cannot resolve \"{}\": no addresses", self.host)),
            Ok(Err(e)) => Err(format!("cannot resolve \"{}\": {e}", self.host)),
            Err(_) => Err(format!(
                "cannot resolve \"{}\": no answer within the timeout of {}",
                self.host,
                format_duration(self.timeout)
            )),
        }
    }
}

impl Check for IcmpPing {
    fn attempt(&self) -> AttemptFuture<'_> {
        // Taken now, as the engine starts its timeout when it gets the future.
        let started = Instant::now();
        Box::pin(self.run(started))
    }
}

/// How long after the start replies are awaited: the engine's timeout less a
/// margin (a tenth of it, at most 100 ms) to judge the run and record it.
fn reply_deadline(timeout: Duration) -> Duration {
    timeout - (timeout / 10).min(MAX_MARGIN)
}

/// What became of one echo request.
#[derive(Debug, Clone, PartialEq)]
enum Echo {
    Reply(Duration),
    /// Sent; nothing came back in time.
    Lost,
    /// Sent; an ICMP error came back instead (raw sockets only).
    Refused {
        from: IpAddr,
        what: String,
    },
    /// The socket would not send it.
    SendFailed(String),
    /// Not sent: it would have been due after the timeout.
    Late,
}

impl Echo {
    fn was_sent(&self) -> bool {
        matches!(self, Echo::Reply(_) | Echo::Lost | Echo::Refused { .. })
    }
}

/// Sends one echo request at `due` and waits for its reply until `deadline`.
async fn echo(
    client: &Client,
    (address, scope_id): (IpAddr, u32),
    ident: PingIdentifier,
    due: Instant,
    deadline: Instant,
) -> Echo {
    if due >= deadline {
        return Echo::Late;
    }
    tokio::time::sleep_until(due).await;
    let Some(slot) = reserve_send_slot(deadline) else {
        return Echo::SendFailed(format!(
            "the send pace shared by all icmp_ping checks ({SEND_RATE_PER_SECOND} echo requests per second) left no time before the timeout"
        ));
    };
    tokio::time::sleep_until(slot).await;
    let mut pinger = client.pinger(address, ident).await;
    pinger.scope_id(scope_id);
    // A sequence number still in flight for this host (only after 65,536
    // requests to it) is refused by surge-ping; take the next one.
    for _ in 0..8 {
        pinger.timeout(deadline.saturating_duration_since(Instant::now()));
        match pinger.ping(next_sequence(), PAYLOAD).await {
            Ok((packet, rtt)) => return classify(&packet, rtt),
            Err(SurgeError::IdenticalRequests { .. }) => continue,
            Err(SurgeError::Timeout { .. } | SurgeError::NetworkError) => return Echo::Lost,
            Err(SurgeError::IOError(e)) => return Echo::SendFailed(e.to_string()),
            Err(other) => return Echo::SendFailed(other.to_string()),
        }
    }
    Echo::SendFailed("no free ICMP sequence number".into())
}

/// When the next echo request may leave (see [`SEND_RATE_PER_SECOND`]), or
/// `None` if not before `deadline`.
fn reserve_send_slot(deadline: Instant) -> Option<Instant> {
    static NEXT: Mutex<Option<Instant>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(PoisonError::into_inner);
    let (slot, after) = pace(*next, Instant::now(), deadline)?;
    *next = Some(after);
    Some(slot)
}

/// The generic cell rate algorithm: `next` is the theoretical time of the
/// next send; a send may go up to [`SEND_BURST`] gaps ahead of it. Returns
/// the send time and the new `next`, or `None` when the send time would
/// not come before `deadline` (nothing is reserved then).
fn pace(next: Option<Instant>, now: Instant, deadline: Instant) -> Option<(Instant, Instant)> {
    let gap = Duration::from_secs(1) / SEND_RATE_PER_SECOND;
    let next = next.map_or(now, |n| n.max(now));
    let slot = next
        .checked_sub(gap * SEND_BURST)
        .map_or(now, |s| s.max(now));
    (slot < deadline).then_some((slot, next + gap))
}

/// An echo reply, or the ICMP error a router sent in its place.
fn classify(packet: &IcmpPacket, rtt: Duration) -> Echo {
    let (from, what) = match packet {
        IcmpPacket::V4(p) => {
            let (kind, code) = (p.get_icmp_type().0, p.get_icmp_code().0);
            if kind == 0 {
                return Echo::Reply(rtt);
            }
            (IpAddr::V4(p.get_source()), icmpv4_error(kind, code))
        }
        IcmpPacket::V6(p) => {
            let (kind, code) = (p.get_icmpv6_type().0, p.get_icmpv6_code().0);
            if kind == 129 {
                return Echo::Reply(rtt);
            }
            (IpAddr::V6(p.get_source()), icmpv6_error(kind, code))
        }
    };
    Echo::Refused { from, what }
}

fn icmpv4_error(kind: u8, code: u8) -> String {
    match (kind, code) {
        (3, 0) => "network unreachable".into(),
        (3, 1) => "host unreachable".into(),
        (3, 3) => "port unreachable".into(),
        (3, 9 | 10 | 13) => "destination administratively prohibited".into(),
        (3, _) => format!("destination unreachable (code {code})"),
        (11, _) => "time exceeded".into(),
        (12, _) => "parameter problem".into(),
        _ => format!("ICMP type {kind} code {code}"),
    }
}

fn icmpv6_error(kind: u8, code: u8) -> String {
    match (kind, code) {
        (1, 0) => "no route to destination".into(),
        (1, 1) => "destination administratively prohibited".into(),
        (1, 3) => "address unreachable".into(),
        (1, _) => format!("destination unreachable (code {code})"),
        (2, _) => "packet too big".into(),
        (3, _) => "time exceeded".into(),
        (4, _) => "parameter problem".into(),
        _ => format!("ICMPv6 type {kind} code {code}"),
    }
}

/// Passes when every request was sent and answered; otherwise says what
/// went wrong, e.g. `1 of 3 echo requests to ::1 got no reply (loss 33.3%)`.
fn verdict(
    target: &str,
    outcomes: &[Echo],
    interval: Duration,
    timeout: Duration,
) -> AttemptResult {
    let tries = outcomes.len();
    let replied = outcomes
        .iter()
        .filter(|o| matches!(o, Echo::Reply(_)))
        .count();
    if replied == tries {
        return Ok(());
    }
    let sent = outcomes.iter().filter(|o| o.was_sent()).count();
    let mut parts = Vec::new();
    if sent > replied {
        let lost = sent - replied;
        let mut part = format!("{lost} of {sent} echo requests to {target} got no reply");
        if replied > 0 {
            part.push_str(&format!(
                " (loss {:.1}%)",
                lost as f64 * 100.0 / sent as f64
            ));
        }
        let refused = outcomes.iter().find_map(|o| match o {
            Echo::Refused { from, what } => Some((from, what)),
            _ => None,
        });
        if let Some((from, what)) = refused {
            part.push_str(&format!(", {from} answered {what}"));
        }
        parts.push(part);
    }
    let mut of = |count: usize, what: String| {
        if count > 0 {
            let to = if parts.is_empty() {
                format!(" to {target}")
            } else {
                String::new()
            };
            parts.push(format!("{count} of {tries} echo requests{to} {what}"));
        }
    };
    let failed = outcomes.iter().filter_map(|o| match o {
        Echo::SendFailed(e) => Some(e),
        _ => None,
    });
    let failed_count = failed.clone().count();
    if let Some(error) = failed.clone().next() {
        of(failed_count, format!("could not be sent: {error}"));
    }
    let late = outcomes.iter().filter(|o| **o == Echo::Late).count();
    of(
        late,
        format!(
            "were not sent: {} apart, they would be due after the timeout of {}",
            format_duration(interval),
            format_duration(timeout)
        ),
    );
    Err(parts.join("; "))
}

/// The run's numbers as exported: RTT extremes, mean and population standard
/// deviation (as pro-bing computes them), loss over the requests sent (100%
/// when none could be sent), all zero RTTs when nothing came back.
fn statistics(sent: usize, rtts: &[Duration], duplicates: usize) -> PingStats {
    let received = rtts.len();
    let seconds: Vec<f64> = rtts.iter().map(Duration::as_secs_f64).collect();
    let (mut min, mut max, mut avg, mut std_dev) = (0.0, 0.0, 0.0, 0.0);
    if !seconds.is_empty() {
        let n = seconds.len() as f64;
        min = seconds.iter().copied().fold(f64::INFINITY, f64::min);
        max = seconds.iter().copied().fold(0.0, f64::max);
        avg = seconds.iter().sum::<f64>() / n;
        std_dev = (seconds.iter().map(|s| (s - avg).powi(2)).sum::<f64>() / n).sqrt();
    }
    let loss_percent = if sent == 0 {
        100.0
    } else {
        sent.saturating_sub(received) as f64 * 100.0 / sent as f64
    };
    PingStats {
        sent: sent as u64,
        received: received as u64,
        duplicates: duplicates as u64,
        min_rtt_seconds: min,
        avg_rtt_seconds: avg,
        max_rtt_seconds: max,
        std_dev_rtt_seconds: std_dev,
        loss_percent,
    }
}

// ---- shared sockets ------------------------------------------------------

/// An identifier per check, for raw sockets (datagram sockets get the
/// kernel's). Seeded from the pid so two anycastd processes rarely clash.
fn next_identifier() -> PingIdentifier {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = NEXT.fetch_add(1, Ordering::Relaxed);
    PingIdentifier((std::process::id() as u16).wrapping_add(offset))
}

/// Process-wide sequence numbers: requests to one host from many checks
/// never share one while in flight.
fn next_sequence() -> PingSequence {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    PingSequence(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A client and the runtime its receiving task lives on.
struct SharedClient {
    runtime: tokio::runtime::Id,
    client: Client,
}

/// The client for IPv4 (`false`) or IPv6 (`true`), opened on first use.
/// A client belongs to the runtime that opened it (its receiving task runs
/// there), so another runtime gets a fresh one.
fn shared_client(ipv6: bool) -> Result<Client, String> {
    static CLIENTS: Mutex<[Option<SharedClient>; 2]> = Mutex::new([None, None]);
    let runtime = tokio::runtime::Handle::current().id();
    let mut clients = CLIENTS.lock().unwrap_or_else(PoisonError::into_inner);
    let slot = &mut clients[usize::from(ipv6)];
    if let Some(shared) = slot
        && shared.runtime == runtime
    {
        return Ok(shared.client.clone());
    }
    let client = open_client(ipv6)?;
    *slot = Some(SharedClient {
        runtime,
        client: client.clone(),
    });
    Ok(client)
}

/// Opens a datagram ICMP socket, or a raw one when that is refused.
fn open_client(ipv6: bool) -> Result<Client, String> {
    let (domain, protocol, kind, name) = if ipv6 {
        (Domain::IPV6, Protocol::ICMPV6, ICMP::V6, "ICMPv6")
    } else {
        (Domain::IPV4, Protocol::ICMPV4, ICMP::V4, "ICMP")
    };
    let socket_type = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(_) => Type::DGRAM,
        Err(datagram) => match Socket::new(domain, Type::RAW, Some(protocol)) {
            Ok(_) => Type::RAW,
            Err(raw) => {
                return Err(socket_error(
                    name,
                    &datagram,
                    &raw,
                    group_range(),
                    effective_gid(),
                ));
            }
        },
    };
    let config = Config::builder()
        .kind(kind)
        .sock_type_hint(socket_type)
        .build();
    let client = Client::new(&config).map_err(|e| format!("cannot open an {name} socket: {e}"))?;
    tracing::info!(
        socket = if socket_type == Type::DGRAM {
            "datagram"
        } else {
            "raw"
        },
        "opened the shared {name} socket for icmp_ping checks"
    );
    Ok(client)
}

/// Why no ICMP socket could be opened, naming the sysctl and the capability
/// when both were refused for lack of permission.
fn socket_error(
    name: &str,
    datagram: &io::Error,
    raw: &io::Error,
    range: Option<(u64, u64)>,
    gid: Option<u64>,
) -> String {
    let denied = |e: &io::Error| e.kind() == io::ErrorKind::PermissionDenied;
    if !(denied(datagram) && denied(raw)) {
        return format!("cannot open an {name} socket: datagram: {datagram}; raw: {raw}");
    }
    let range_text = match range {
        Some((low, high)) => format!("net.ipv4.ping_group_range ({low} {high})"),
        None => "net.ipv4.ping_group_range".into(),
    };
    let gid_text = gid.map_or_else(|| "this process".into(), |g| format!("gid {g}"));
    let admitted = matches!((range, gid), (Some((low, high)), Some(g)) if low <= g && g <= high);
    if admitted {
        format!(
            "cannot open an {name} socket: datagram sockets were refused ({datagram}) although {range_text} admits {gid_text}, and raw sockets need CAP_NET_RAW"
        )
    } else {
        format!(
            "cannot open an {name} socket: datagram sockets are not allowed by {range_text} for {gid_text} and raw sockets need CAP_NET_RAW"
        )
    }
}

/// `net.ipv4.ping_group_range` as (low, high).
fn group_range() -> Option<(u64, u64)> {
    parse_group_range(&std::fs::read_to_string(GROUP_RANGE_FILE).ok()?)
}

fn parse_group_range(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(low)), Some(Ok(high)), None) => Some((low, high)),
        _ => None,
    }
}

/// The effective gid, from `/proc/self/status` ("Gid: real effective ...").
fn effective_gid() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_gid(&status)
}

fn parse_effective_gid(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("Gid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::IcmpTarget;
    use crate::config::{ConfigDuration, parse_duration};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn spec(host: &str, tries: u8, interval: &str, timeout: &str) -> IcmpPingSpec {
        IcmpPingSpec {
            target: IcmpTarget { host: host.into() },
            tries,
            interval: ConfigDuration::from(parse_duration(interval).unwrap()),
            timeout: ConfigDuration::from(parse_duration(timeout).unwrap()),
        }
    }

    fn labels() -> CheckLabels {
        CheckLabels {
            service: "svc".into(),
            check: "icmp_ping".into(),
        }
    }

    #[test]
    fn statistics_of_a_full_run() {
        let stats = statistics(4, &[ms(1), ms(2), ms(3), ms(4)], 0);
        assert_eq!((stats.sent, stats.received, stats.duplicates), (4, 4, 0));
        assert!((stats.min_rtt_seconds - 0.001).abs() < 1e-12);
        assert!((stats.max_rtt_seconds - 0.004).abs() < 1e-12);
        assert!((stats.avg_rtt_seconds - 0.0025).abs() < 1e-12);
        // Population standard deviation of 1, 2, 3, 4 ms: sqrt(1.25) ms.
        assert!((stats.std_dev_rtt_seconds - 1.25f64.sqrt() / 1000.0).abs() < 1e-12);
        assert_eq!(stats.loss_percent, 0.0);
    }

    #[test]
    fn statistics_with_loss_and_duplicates() {
        let stats = statistics(3, &[ms(5)], 2);
        assert_eq!((stats.sent, stats.received, stats.duplicates), (3, 1, 2));
        assert_eq!(stats.min_rtt_seconds, stats.max_rtt_seconds);
        assert_eq!(stats.std_dev_rtt_seconds, 0.0);
        assert!((stats.loss_percent - 200.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn statistics_of_silence() {
        let stats = statistics(3, &[], 0);
        assert_eq!(stats.received, 0);
        assert_eq!(stats.avg_rtt_seconds, 0.0);
        assert_eq!(stats.min_rtt_seconds, 0.0);
        assert_eq!(stats.loss_percent, 100.0);
        assert_eq!(statistics(0, &[], 0).loss_percent, 100.0);
    }

    #[test]
    fn every_reply_passes() {
        let all = vec![Echo::Reply(ms(1)); 3];
        assert_eq!(verdict("10.1.1.2", &all, ms(100), ms(1000)), Ok(()));
    }

    #[test]
    fn reasons_count_what_was_lost() {
        let none = vec![Echo::Lost; 3];
        assert_eq!(
            verdict("10.1.1.2", &none, ms(100), ms(1000)).unwrap_err(),
            "3 of 3 echo requests to 10.1.1.2 got no reply"
        );
        let one = vec![Echo::Reply(ms(1)), Echo::Lost, Echo::Reply(ms(1))];
        assert_eq!(
            verdict("::1", &one, ms(100), ms(1000)).unwrap_err(),
            "1 of 3 echo requests to ::1 got no reply (loss 33.3%)"
        );
    }

    #[test]
    fn reasons_name_icmp_errors_send_failures_and_late_requests() {
        let refused = vec![
            Echo::Refused {
                from: "10.0.0.1".parse().unwrap(),
                what: icmpv4_error(3, 1),
            },
            Echo::Reply(ms(1)),
        ];
        assert_eq!(
            verdict("10.1.1.2", &refused, ms(100), ms(1000)).unwrap_err(),
            "1 of 2 echo requests to 10.1.1.2 got no reply (loss 50.0%), 10.0.0.1 answered host unreachable"
        );
        let failed = vec![Echo::SendFailed("Network is unreachable".into()); 2];
        assert_eq!(
            verdict("192.0.2.9", &failed, ms(100), ms(1000)).unwrap_err(),
            "2 of 2 echo requests to 192.0.2.9 could not be sent: Network is unreachable"
        );
        let late = vec![Echo::Reply(ms(1)), Echo::Lost, Echo::Late, Echo::Late];
        assert_eq!(
            verdict("h (10.1.1.2)", &late, ms(500), ms(1000)).unwrap_err(),
            "1 of 2 echo requests to h (10.1.1.2) got no reply (loss 50.0%); \
             2 of 4 echo requests were not sent: 500ms apart, they would be due after the timeout of 1s"
        );
    }

    #[test]
    fn icmp_error_names() {
        assert_eq!(icmpv4_error(3, 0), "network unreachable");
        assert_eq!(icmpv4_error(11, 0), "time exceeded");
        assert_eq!(icmpv6_error(1, 3), "address unreachable");
        assert_eq!(icmpv6_error(3, 0), "time exceeded");
        assert_eq!(icmpv6_error(200, 1), "ICMPv6 type 200 code 1");
    }

    #[test]
    fn socket_error_names_sysctl_group_and_capability() {
        let eacces = io::Error::from_raw_os_error(13);
        let eperm = io::Error::from_raw_os_error(1);
        assert_eq!(
            socket_error("ICMP", &eacces, &eperm, Some((1, 0)), Some(65534)),
            "cannot open an ICMP socket: datagram sockets are not allowed by \
             net.ipv4.ping_group_range (1 0) for gid 65534 and raw sockets need CAP_NET_RAW"
        );
        assert_eq!(
            socket_error("ICMPv6", &eacces, &eperm, None, None),
            "cannot open an ICMPv6 socket: datagram sockets are not allowed by \
             net.ipv4.ping_group_range for this process and raw sockets need CAP_NET_RAW"
        );
        let admitted = socket_error("ICMP", &eacces, &eperm, Some((0, 10)), Some(5));
        assert!(
            admitted.contains("datagram sockets were refused")
                && admitted.contains("although net.ipv4.ping_group_range (0 10) admits gid 5")
                && admitted.ends_with("raw sockets need CAP_NET_RAW"),
            "{admitted}"
        );
        let other = io::Error::from_raw_os_error(97); // EAFNOSUPPORT
        let text = socket_error("ICMPv6", &other, &eperm, Some((1, 0)), Some(0));
        assert!(
            text.starts_with("cannot open an ICMPv6 socket: datagram: ")
                && text.contains("; raw: "),
            "{text}"
        );
    }

    #[test]
    fn parses_group_range_and_gid() {
        assert_eq!(parse_group_range("1\t0\n"), Some((1, 0)));
        assert_eq!(parse_group_range("0 2147483647\n"), Some((0, 2147483647)));
        assert_eq!(parse_group_range("x"), None);
        let status = "Name:\tanycastd\nUid:\t0\t0\t0\t0\nGid:\t100\t65534\t65534\t65534\n";
        assert_eq!(parse_effective_gid(status), Some(65534));
        assert!(effective_gid().is_some());
    }

    #[test]
    fn reply_deadline_leaves_a_margin() {
        assert_eq!(reply_deadline(ms(1000)), ms(900));
        assert_eq!(reply_deadline(ms(5000)), ms(4900));
        assert_eq!(reply_deadline(ms(50)), ms(45));
    }

    #[test]
    fn literals_need_no_resolution() {
        let v6 = IcmpPing::new(&spec("[::1]", 1, "1s", "1s"), &labels()).unwrap();
        assert_eq!(v6.literal, Some("::1".parse().unwrap()));
        let name = IcmpPing::new(&spec("localhost", 1, "1s", "1s"), &labels()).unwrap();
        assert_eq!(name.literal, None);
        assert!(IcmpPing::new(&spec(" ", 1, "1s", "1s"), &labels()).is_err());
    }

    #[tokio::test]
    async fn unresolvable_names_fail_with_the_resolver_error() {
        let check = IcmpPing::new(&spec("nohost.invalid", 1, "1s", "2s"), &labels()).unwrap();
        let reason = check.attempt().await.unwrap_err();
        assert!(
            reason.starts_with("cannot resolve \"nohost.invalid\": "),
            "{reason}"
        );
    }

    #[test]
    fn sends_are_paced_after_a_burst() {
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        let gap = Duration::from_secs(1) / SEND_RATE_PER_SECOND;
        let mut next = None;
        let mut slots = Vec::new();
        for _ in 0..200 {
            let (slot, after) = pace(next, now, far).unwrap();
            next = Some(after);
            slots.push(slot);
        }
        let burst = slots.iter().filter(|s| **s == now).count();
        assert_eq!(burst, SEND_BURST as usize + 1);
        assert_eq!(slots[199] - now, gap * (199 - SEND_BURST));
        assert!(slots.windows(2).all(|w| w[0] <= w[1]));
        // A send that could not leave before the deadline reserves nothing.
        assert_eq!(pace(next, now, now + gap), None);
        // Idle time refills the burst.
        let later = now + Duration::from_secs(1);
        assert_eq!(pace(next, later, far).unwrap().0, later);
    }

    /// The effective uid, from `/proc/self/status` ("Uid: real effective ...").
    fn effective_uid() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Uid:"))?;
        line.split_whitespace().nth(2)?.parse().ok()
    }

    /// Whether a test that needs an ICMP socket must stop here: only when
    /// `reason` says none could be opened and we are not root. Root (as in
    /// CI) always gets a raw socket, so there a missing socket is a failure.
    fn skip_without_icmp_socket(test: &str, reason: &str) -> bool {
        if !reason.starts_with("cannot open an ICMP") {
            return false;
        }
        let uid = effective_uid();
        assert_ne!(
            uid,
            Some(0),
            "{test}: root could not open a socket: {reason}"
        );
        eprintln!("{test}: SKIPPED, not root (uid {uid:?}) and {reason}");
        true
    }

    #[test]
    fn reads_the_effective_uid() {
        assert!(effective_uid().is_some());
        assert!(!skip_without_icmp_socket(
            "t",
            "3 of 3 echo requests got no reply"
        ));
    }

    /// Many checks share one socket: their requests to one host never clash.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_checks_share_the_socket_without_clashing() {
        let checks: Vec<IcmpPing> = (0..200)
            .map(|_| IcmpPing::new(&spec("127.0.0.1", 3, "5ms", "3s"), &labels()).unwrap())
            .collect();
        let results = join_all(checks.iter().map(|c| c.attempt())).await;
        let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if let Some(first) = failures.first()
            && skip_without_icmp_socket("many_checks_share_the_socket_without_clashing", first)
        {
            return;
        }
        assert!(
            failures.is_empty(),
            "{} of 200 checks failed, first: {:?}",
            failures.len(),
            failures.first()
        );
    }

    /// The engine drops an attempt at its timeout; the next one still works.
    #[tokio::test]
    async fn a_dropped_attempt_leaves_nothing_behind() {
        let check = IcmpPing::new(&spec("::1", 3, "100ms", "1s"), &labels()).unwrap();
        match tokio::time::timeout(ms(50), check.attempt()).await {
            // Cut while waiting to send the second request, as intended.
            Err(_) => {}
            Ok(Err(reason))
                if skip_without_icmp_socket("a_dropped_attempt_leaves_nothing_behind", &reason) =>
            {
                return;
            }
            Ok(other) => panic!("the run should still be waiting to send, got {other:?}"),
        }
        assert_eq!(check.attempt().await, Ok(()));
    }

    /// Loopback pings need a datagram socket admitted by ping_group_range or
    /// a raw socket (root). Only a non-root run without either is skipped.
    #[tokio::test]
    async fn loopback_answers_every_request() {
        for host in ["127.0.0.1", "::1"] {
            let check = IcmpPing::new(&spec(host, 3, "10ms", "2s"), &labels()).unwrap();
            match check.attempt().await {
                Ok(()) => {}
                Err(reason)
                    if skip_without_icmp_socket("loopback_answers_every_request", &reason) =>
                {
                    return;
                }
                Err(reason) => panic!("{host}: {reason}"),
            }
        }
    }
}
