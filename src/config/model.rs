//! The config file's shape, key for key, as serde reads it.
//!
//! These structs mirror the original anycastd schema (plus our additions) and
//! reject unknown keys. They hold what the operator wrote; `resolve` turns
//! them into the runtime [`Config`](super::Config) after cross-field checks.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Deserialize;

use super::duration::{ConfigDuration, LongDuration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub announcer: RawAnnouncer,
    pub services: Vec<RawService>,
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    #[serde(default)]
    pub control: Option<RawControl>,
}

/// `control`: the local control socket and the drain state file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Unix socket path; `$RUNTIME_DIRECTORY/control.sock` under systemd.
    #[serde(default)]
    pub socket: Option<String>,
    /// Permission bits of the socket, octal as a string ("0660").
    #[serde(default)]
    pub socket_mode: Option<String>,
    /// Where drains set by `anycastd drain` are kept across restarts;
    /// `$STATE_DIRECTORY/drains.json` under systemd.
    #[serde(default)]
    pub state_file: Option<String>,
}

/// Attributes of one state (`up`, `degraded` or `draining`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    #[serde(default)]
    pub med: Option<u32>,
    #[serde(default)]
    pub local_pref: Option<u32>,
    #[serde(default)]
    pub communities: Option<Vec<String>>,
    #[serde(default)]
    pub large_communities: Option<Vec<String>>,
    #[serde(default)]
    pub as_path_prepend: Option<u8>,
}

/// `attributes`: one profile per state.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfiles {
    #[serde(default)]
    pub up: Option<RawProfile>,
    #[serde(default)]
    pub degraded: Option<RawProfile>,
    #[serde(default)]
    pub draining: Option<RawProfile>,
}

/// `max_withdraw`: a count (`10`) or a share of this node's routes (`"25%"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawMaxWithdraw {
    Count(u64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Our own BGP speaker; what the original anycastd did (embedded GoBGP).
    #[default]
    Native,
    /// Text lines for ExaBGP's `process` API on stdout.
    Exabgp,
    /// A BIRD include file plus `configure` over BIRD's control socket.
    Bird,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Native => "native",
            BackendKind::Exabgp => "exabgp",
            BackendKind::Bird => "bird",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnnouncer {
    #[serde(default)]
    pub backend: Option<BackendKind>,
    #[serde(default)]
    pub router_id: Option<Ipv4Addr>,
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    #[serde(default)]
    pub local_asn: Option<u32>,
    #[serde(default)]
    pub routes: Vec<IpNet>,
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    #[serde(default)]
    pub exabgp: Option<RawExabgp>,
    #[serde(default)]
    pub bird: Option<RawBird>,
    #[serde(default)]
    pub native: Option<RawNative>,
    /// Attribute profiles per state, for every service unless it overrides.
    #[serde(default)]
    pub attributes: Option<RawProfiles>,
    /// How long a drained service is announced with GRACEFUL_SHUTDOWN
    /// before its routes are withdrawn; default 30s.
    #[serde(default)]
    pub drain_time: Option<ConfigDuration>,
    /// Drain every service at SIGTERM (and wait `drain_time`) before
    /// withdrawing and closing sessions.
    #[serde(default)]
    pub graceful_shutdown: Option<bool>,
    /// While this file exists, the whole node is drained.
    #[serde(default)]
    pub maintenance_file: Option<String>,
    /// Refuse a reload that would withdraw more than this many routes.
    #[serde(default)]
    pub max_withdraw: Option<RawMaxWithdraw>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNative {
    /// Hold time offered in OPEN (0 = no keepalives); default 90s.
    #[serde(default)]
    pub hold_time: Option<ConfigDuration>,
    /// Peer TCP port; default 179.
    #[serde(default)]
    pub port: Option<u16>,
    /// Wait for peers to connect instead of connecting.
    #[serde(default)]
    pub passive: Option<bool>,
    /// IPv6 next hop for IPv6 routes (required for IPv6 routes over IPv4 sessions).
    #[serde(default)]
    pub local_address6: Option<Ipv6Addr>,
    /// RFC 8203 text sent with the Cease at shutdown.
    #[serde(default)]
    pub shutdown_message: Option<String>,
    /// BFD defaults for every peer (field by field under a peer's own).
    #[serde(default)]
    pub bfd: Option<RawBfd>,
}

/// `bfd` of a peer or of `announcer.native`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBfd {
    /// Defaults to true where a `bfd` block is given.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub min_tx: Option<ConfigDuration>,
    #[serde(default)]
    pub min_rx: Option<ConfigDuration>,
    #[serde(default)]
    pub multiplier: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub name: String,
    pub remote_address: IpAddr,
    pub remote_asn: u32,
    #[serde(default)]
    pub enable_multihop: bool,
    #[serde(default)]
    pub multihop_ttl: Option<u8>,
    /// The seed README's misspelling, accepted with a warning.
    #[serde(default)]
    pub multihope_ttl: Option<u8>,
    /// Our additions, overriding `announcer.native` for this peer.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub passive: Option<bool>,
    #[serde(default)]
    pub hold_time: Option<ConfigDuration>,
    #[serde(default)]
    pub bfd: Option<RawBfd>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExabgp {
    /// Next hop for IPv4 routes: `self` or an IPv4 address.
    #[serde(default)]
    pub next_hop: Option<String>,
    /// Next hop for IPv6 routes: `self` or an IPv6 address. ExaBGP refuses
    /// `self` for IPv6 routes over an IPv4 session, hence a separate key.
    #[serde(default)]
    pub next_hop6: Option<String>,
    /// How long to wait for ExaBGP's acknowledgements at shutdown.
    #[serde(default)]
    pub shutdown_timeout: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBird {
    /// The file anycastd owns: IPv4 `route` lines (static format) or both
    /// prefix sets (prefix_set format).
    pub include_file: String,
    /// IPv6 `route` lines for the static format (a static protocol has one channel).
    #[serde(default)]
    pub include_file6: Option<String>,
    #[serde(default)]
    pub socket: Option<String>,
    #[serde(default)]
    pub format: Option<BirdFormat>,
    #[serde(default)]
    pub variable: Option<String>,
    /// Exact name of the IPv4 prefix set (instead of `{variable}_V4`), e.g.
    /// anycast-healthchecker's `ACAST_PS_ADVERTISE`.
    #[serde(default)]
    pub variable_v4: Option<String>,
    /// Exact name of the IPv6 prefix set (instead of `{variable}_V6`).
    #[serde(default)]
    pub variable_v6: Option<String>,
    #[serde(default)]
    pub route_kind: Option<BirdRouteKind>,
    #[serde(default)]
    pub reload_command: Option<Vec<String>>,
    #[serde(default)]
    pub reconfigure_timeout: Option<ConfigDuration>,
}

/// What the include file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BirdFormat {
    /// `route P blackhole;` lines, included inside a `protocol static`.
    #[default]
    Static,
    /// `define NAME_V4 = [ ... ];` prefix sets, as anycast-healthchecker writes.
    PrefixSet,
}

/// The destination of the static routes anycastd writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BirdRouteKind {
    #[default]
    Blackhole,
    Unreachable,
    Prohibit,
}

impl BirdRouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BirdRouteKind::Blackhole => "blackhole",
            BirdRouteKind::Unreachable => "unreachable",
            BirdRouteKind::Prohibit => "prohibit",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: String,
    pub check_interval: ConfigDuration,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub strategy_options: Option<serde_json::Value>,
    pub checks: Vec<RawCheck>,
    #[serde(default)]
    pub routes: Vec<IpNet>,
    #[serde(default)]
    pub rise: Option<u32>,
    #[serde(default)]
    pub fall: Option<u32>,
    /// Overrides `announcer.attributes`, key by key.
    #[serde(default)]
    pub attributes: Option<RawProfiles>,
    #[serde(default)]
    pub drain_time: Option<ConfigDuration>,
    /// While this file exists, this service is drained.
    #[serde(default)]
    pub maintenance_file: Option<String>,
    /// Round interval while rise or fall is in progress.
    #[serde(default)]
    pub fast_interval: Option<ConfigDuration>,
    /// How long a service must stay Up after being Down before its routes
    /// are announced again.
    #[serde(default)]
    pub announce_delay: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub kind: CheckKind,
    /// Decoded per kind in a second step, so errors keep the full key path.
    pub spec: serde_json::Value,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// A failure of this check makes the service Degraded, not Down.
    #[serde(default)]
    pub degrades: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    AssignedAddress,
    DnsLookup,
    #[serde(rename = "http_2xx")]
    Http2xx,
    IcmpPing,
    TftpRrq,
    Ntpq,
    TlsCertificate,
    TcpConnect,
    File,
    Listening,
    GrpcHealth,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::AssignedAddress => "assigned_address",
            CheckKind::DnsLookup => "dns_lookup",
            CheckKind::Http2xx => "http_2xx",
            CheckKind::IcmpPing => "icmp_ping",
            CheckKind::TftpRrq => "tftp_rrq",
            CheckKind::Ntpq => "ntpq",
            CheckKind::TlsCertificate => "tls_certificate",
            CheckKind::TcpConnect => "tcp_connect",
            CheckKind::File => "file",
            CheckKind::Listening => "listening",
            CheckKind::GrpcHealth => "grpc_health",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: bool,
    #[serde(default)]
    pub address: Option<String>,
}

// ---- check specs -------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignedAddressSpec {
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    #[serde(default)]
    pub interface: Option<String>,
}

/// `listening`: a local socket listening on `port` (TCP in LISTEN state, or
/// a bound UDP socket), on `address` or a wildcard covering it when given.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListeningSpec {
    pub port: u16,
    #[serde(default)]
    pub protocol: ListenProtocol,
    #[serde(default)]
    pub address: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenProtocol {
    #[default]
    Tcp,
    Udp,
}

impl ListenProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenProtocol::Tcp => "tcp",
            ListenProtocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsLookupSpec {
    pub query: String,
    pub resolver: String,
    /// The response code every answer must carry; unset: NOERROR with at
    /// least one record.
    #[serde(default)]
    pub expect_rcode: Option<String>,
    /// Addresses or names that must all be in the answers.
    #[serde(default)]
    pub expect_answers: Vec<String>,
    /// Which records to ask for; both A and AAAA unless set.
    #[serde(default)]
    pub record_type: DnsRecordType,
    pub tries: u8,
    pub interval: ConfigDuration,
    pub timeout: ConfigDuration,
}

/// `dns_lookup.record_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DnsRecordType {
    #[serde(alias = "a", rename = "A")]
    A,
    #[serde(alias = "aaaa", rename = "AAAA")]
    Aaaa,
    #[default]
    #[serde(alias = "BOTH", rename = "both")]
    Both,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2xxSpec {
    pub url: String,
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub payload: Option<String>,
    pub tries: u8,
    pub interval: ConfigDuration,
    pub timeout: ConfigDuration,
    /// Reuse pooled keep-alive connections; by default every attempt opens a
    /// new connection (and makes a full TLS handshake), as a new client would.
    #[serde(default)]
    pub keepalive: bool,
    /// Accepted final statuses: codes (`204`) and ranges (`"300-399"`,
    /// `"2xx"`); empty means 200–299.
    #[serde(default)]
    pub expect_status: Vec<StatusMatch>,
    /// A substring the first [`HTTP_BODY_LIMIT`] bytes of the body must contain.
    #[serde(default)]
    pub expect_body: Option<String>,
    /// A regular expression the first [`HTTP_BODY_LIMIT`] bytes must match.
    #[serde(default)]
    pub expect_body_regex: Option<String>,
    /// TLS name (SNI, certificate verification and `Host`) used instead of
    /// the URL's host; the connection still goes to the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM bundle of certificates trusted instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// Bytes of an HTTP body that `expect_body` and `expect_body_regex` see.
pub const HTTP_BODY_LIMIT: usize = 64 * 1024;

/// One `expect_status` entry as written: a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StatusMatch {
    Code(u64),
    Text(String),
}

impl StatusMatch {
    /// The inclusive range of status codes this entry accepts, or why it
    /// is not one.
    pub fn range(&self) -> Result<(u16, u16), String> {
        let code = |text: &str| -> Option<u16> {
            let text = text.trim();
            if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            text.parse().ok().filter(|c| (100..=599).contains(c))
        };
        let bad = |found: String| {
            format!(
                "expected a status code (100-599) or a range such as \"300-399\" or \"2xx\", found {found}"
            )
        };
        match self {
            StatusMatch::Code(c) => match u16::try_from(*c) {
                Ok(c) if (100..=599).contains(&c) => Ok((c, c)),
                _ => Err(bad(c.to_string())),
            },
            StatusMatch::Text(text) => {
                let t = text.trim();
                if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX"))
                    && class.len() == 1
                    && let Some(lo) = code(&format!("{class}00"))
                {
                    return Ok((lo, lo + 99));
                }
                if let Some((lo, hi)) = t.split_once('-') {
                    return match (code(lo), code(hi)) {
                        (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
                        (Some(_), Some(_)) => Err(format!(
                            "range \"{text}\" is empty: its first code is above its last"
                        )),
                        _ => Err(bad(format!("\"{text}\""))),
                    };
                }
                code(t)
                    .map(|c| (c, c))
                    .ok_or_else(|| bad(format!("\"{text}\"")))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpPingSpec {
    #[serde(rename = "static")]
    pub target: IcmpTarget,
    pub tries: u8,
    pub interval: ConfigDuration,
    pub timeout: ConfigDuration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpTarget {
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TftpRrqSpec {
    pub url: String,
    #[serde(default)]
    pub expected_sha256: Option<String>,
    pub tries: u8,
    pub interval: ConfigDuration,
    pub timeout: ConfigDuration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtpqSpec {
    pub server: String,
    pub src_addr: IpAddr,
    pub tries: u8,
    pub offset_threshold: ConfigDuration,
    pub interval: ConfigDuration,
    pub timeout: ConfigDuration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificateSpec {
    #[serde(default)]
    pub local: Option<TlsLocal>,
    #[serde(default)]
    pub remote: Option<TlsRemote>,
    #[serde(default)]
    pub common_name: Option<String>,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddr>,
    #[serde(default)]
    pub issuer: Option<String>,
    /// Our addition: fail when the certificate expires sooner than this.
    #[serde(default)]
    pub min_valid_for: Option<LongDuration>,
    /// Our addition: bounds the remote handshake (the original had none).
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsLocal {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRemote {
    pub host: String,
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConnectSpec {
    pub host: String,
    pub port: u16,
    /// Bytes sent once connected.
    #[serde(default)]
    pub send: Option<String>,
    /// A substring the server must send within the timeout.
    #[serde(default)]
    pub expect: Option<String>,
    pub tries: u8,
    pub interval: ConfigDuration,
    pub timeout: ConfigDuration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    /// A substring the file's first 64 KiB must hold.
    #[serde(default)]
    pub contains: Option<String>,
    /// The file's modification time must be younger than this.
    #[serde(default)]
    pub max_age: Option<LongDuration>,
}

/// `grpc_health`: `grpc.health.v1.Health/Check` over HTTP/2.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcHealthSpec {
    /// host:port of the gRPC server.
    pub address: String,
    /// The service to ask about; empty or absent is the server's overall health.
    #[serde(default)]
    pub service: Option<String>,
    /// TLS with ALPN h2 instead of cleartext HTTP/2 (prior knowledge).
    #[serde(default)]
    pub tls: bool,
    /// The name the certificate must carry; default the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM CA certificates to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    pub tries: u8,
    pub interval: ConfigDuration,
    pub timeout: ConfigDuration,
}
