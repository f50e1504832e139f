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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsLookupSpec {
    pub query: String,
    pub resolver: String,
    pub tries: u8,
    pub interval: ConfigDuration,
    pub timeout: ConfigDuration,
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
