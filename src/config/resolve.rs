//! From the file's shape to the runtime config: defaults applied, cross-field
//! rules checked, every problem reported with its key path.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::duration::ConfigDuration;
use super::model::*;
use super::operate::{
    ControlConfig, DEFAULT_DRAIN_TIME, DrainConfig, Profiles, resolve_control,
    resolve_max_withdraw, resolve_profiles,
};
use super::{Problem, decode, join_path, unknown_message};
pub use crate::route::NextHop;

/// A fully checked configuration, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    pub backend: BackendKind,
    /// Routes protected by every service together (`announcer.routes`).
    pub routes: Vec<IpNet>,
    pub services: Vec<ServiceConfig>,
    /// Where `/metrics` is served; `None` when metrics are disabled.
    pub metrics: Option<SocketAddr>,
    pub router_id: Option<Ipv4Addr>,
    pub local_address: Option<IpAddr>,
    pub local_asn: Option<u32>,
    pub peers: Vec<PeerConfig>,
    pub exabgp: ExabgpConfig,
    /// Settings of the bird backend; `Some` whenever `announcer.bird` is set.
    pub bird: Option<BirdConfig>,
    pub native: NativeConfig,
    /// The announcer's attribute profiles (`announcer.attributes`), which
    /// `announcer.routes` carry.
    pub attributes: Profiles,
    /// `announcer.drain_time`: the default of every service.
    pub drain_time: Duration,
    pub drain: DrainConfig,
    pub control: ControlConfig,
    /// Things that load but deserve the operator's attention.
    pub warnings: Vec<String>,
}

impl Config {
    /// Every prefix any part of the config can announce, sorted, no repeats.
    pub fn all_routes(&self) -> Vec<IpNet> {
        let mut all: Vec<IpNet> = self
            .routes
            .iter()
            .chain(self.services.iter().flat_map(|s| s.routes.iter()))
            .copied()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// A one-line summary for `anycastd validate`.
    pub fn summary(&self) -> String {
        let checks: usize = self.services.iter().map(|s| s.checks.len()).sum();
        format!(
            "{}: ok: {} service(s), {} check(s), {} route(s), backend {}, metrics {}",
            self.source.display(),
            self.services.len(),
            checks,
            self.all_routes().len(),
            self.backend.as_str(),
            self.metrics
                .map(|a| format!("on {a}"))
                .unwrap_or_else(|| "off".into()),
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    /// Time from the start of one round of checks to the start of the next.
    pub check_interval: Duration,
    pub strategy: Strategy,
    pub checks: Vec<CheckConfig>,
    /// Routes this service alone protects (our extension).
    pub routes: Vec<IpNet>,
    /// Consecutive passing rounds before Down turns Up.
    pub rise: u32,
    /// Consecutive failing rounds before Up turns Down.
    pub fall: u32,
    /// Attributes per state: the announcer's, overridden by the service's.
    pub attributes: Profiles,
    /// How long a drain announces GRACEFUL_SHUTDOWN before withdrawing.
    pub drain_time: Duration,
    /// While this file exists, the service is drained.
    pub maintenance_file: Option<PathBuf>,
    /// Round interval while rise or fall is in progress.
    pub fast_interval: Option<Duration>,
    /// Time Up after being Down before the routes come back.
    pub announce_delay: Duration,
}

/// How a service's check results combine into one verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// Every check must pass (the default).
    AtLeastOne,
    /// One passing check is enough.
    All,
    /// Each group needs at least one passing check.
    AllInGroup,
    /// Down when the failed fraction exceeds `n` (0.5 = 50%).
    AtLeastNPercentage(f64),
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::AtLeastOne => "at_least_one",
            Strategy::All => "all",
            Strategy::AllInGroup => "all_in_group",
            Strategy::AtLeastNPercentage(_) => "at_least_n_percentage",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    /// Metric label: the check's `name`, else its kind (suffixed when repeated).
    pub name: String,
    pub group: String,
    /// A failure makes the service Degraded rather than Down.
    pub degrades: bool,
    pub spec: CheckSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckSpec {
    AssignedAddress(AssignedAddressSpec),
    DnsLookup(DnsLookupSpec),
    Http2xx(Http2xxSpec),
    IcmpPing(IcmpPingSpec),
    TftpRrq(TftpRrqSpec),
    Ntpq(NtpqSpec),
    TlsCertificate(TlsCertificateSpec),
    TcpConnect(TcpConnectSpec),
    File(FileSpec),
    Listening(ListeningSpec),
    GrpcHealth(GrpcHealthSpec),
}

impl CheckSpec {
    pub fn kind(&self) -> CheckKind {
        match self {
            CheckSpec::AssignedAddress(_) => CheckKind::AssignedAddress,
            CheckSpec::DnsLookup(_) => CheckKind::DnsLookup,
            CheckSpec::Http2xx(_) => CheckKind::Http2xx,
            CheckSpec::IcmpPing(_) => CheckKind::IcmpPing,
            CheckSpec::TftpRrq(_) => CheckKind::TftpRrq,
            CheckSpec::Ntpq(_) => CheckKind::Ntpq,
            CheckSpec::TlsCertificate(_) => CheckKind::TlsCertificate,
            CheckSpec::TcpConnect(_) => CheckKind::TcpConnect,
            CheckSpec::File(_) => CheckKind::File,
            CheckSpec::Listening(_) => CheckKind::Listening,
            CheckSpec::GrpcHealth(_) => CheckKind::GrpcHealth,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub name: String,
    pub remote_address: IpAddr,
    pub remote_asn: u32,
    pub enable_multihop: bool,
    pub multihop_ttl: Option<u8>,
    /// TCP port of the peer (or ours, when passive).
    pub port: u16,
    /// Source address of the session; `announcer.local_address` unless overridden.
    pub local_address: Option<IpAddr>,
    /// TCP-MD5 key (RFC 2385).
    pub password: Option<String>,
    pub passive: bool,
    /// Hold time offered, in seconds (0 or 3..=65535).
    pub hold_time: u16,
    /// BFD with this peer, if enabled.
    pub bfd: Option<BfdSettings>,
}

/// A peer's BFD timers (RFC 5880 bfd.DesiredMinTxInterval,
/// bfd.RequiredMinRxInterval, bfd.DetectMult).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdSettings {
    pub min_tx: Duration,
    pub min_rx: Duration,
    pub multiplier: u8,
}

/// The BFD defaults: FRR's (300 ms × 3).
pub const BFD_DEFAULT_INTERVAL: Duration = Duration::from_millis(300);
pub const BFD_DEFAULT_MULTIPLIER: u8 = 3;
/// BFD intervals accepted: timers finer than 10 ms are not kept by a
/// general-purpose host; above a minute BFD is slower than BGP's own hold timer.
const BFD_INTERVALS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(60);

/// `announcer.native`: defaults for every peer of the native backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeConfig {
    pub local_address6: Option<std::net::Ipv6Addr>,
    pub shutdown_message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExabgpConfig {
    pub next_hop: NextHop,
    pub next_hop6: NextHop,
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdConfig {
    pub include_file: PathBuf,
    pub include_file6: Option<PathBuf>,
    pub socket: PathBuf,
    pub format: BirdFormat,
    /// Name of the IPv4 prefix set: `variable_v4`, else `{variable}_V4`.
    pub set_v4: String,
    /// Name of the IPv6 prefix set: `variable_v6`, else `{variable}_V6`.
    pub set_v6: String,
    pub route_kind: BirdRouteKind,
    /// Run instead of talking to the control socket (argv, no shell).
    pub reload_command: Option<Vec<String>>,
    pub reconfigure_timeout: Duration,
}

/// Debian's and the RPMs' control socket path.
pub const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";

/// Collects problems so the operator sees all of them at once.
#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// What every service inherits from the announcer.
struct ServiceDefaults<'a> {
    attributes: Option<&'a RawProfiles>,
    drain_time: Duration,
    local_asn: Option<u32>,
}

pub(super) fn resolve(
    raw: RawConfig,
    file: &Path,
    backend_override: Option<BackendKind>,
) -> Result<Config, Vec<Problem>> {
    let mut problems = Problems::default();
    let mut warnings = Vec::new();
    let announcer = raw.announcer;
    let backend = backend_override.or(announcer.backend).unwrap_or_default();
    let drain_time = announcer
        .drain_time
        .map(ConfigDuration::get)
        .unwrap_or(DEFAULT_DRAIN_TIME);
    let defaults = ServiceDefaults {
        attributes: announcer.attributes.as_ref(),
        drain_time,
        local_asn: announcer.local_asn,
    };
    let attributes = resolve_profiles(
        None,
        "announcer",
        announcer.attributes.as_ref(),
        announcer.local_asn,
        &mut problems,
    );

    let routes = normalize_routes(&announcer.routes, "announcer.routes", &mut warnings);

    let mut services = Vec::new();
    if raw.services.is_empty() {
        problems.add("services", "at least one service is required");
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    for (index, service) in raw.services.into_iter().enumerate() {
        let path = format!("services[{index}]");
        if let Some(first) = names.insert(service.name.clone(), index) {
            problems.add(
                format!("{path}.name"),
                format!(
                    "service name `{}` is already used by services[{first}]; names label metrics and must be unique",
                    service.name
                ),
            );
        }
        if let Some(resolved) =
            resolve_service(service, &path, &defaults, &mut problems, &mut warnings)
        {
            services.push(resolved);
        }
    }

    if routes.is_empty() && services.iter().all(|s| s.routes.is_empty()) {
        problems.add(
            "announcer.routes",
            "no routes to announce: list prefixes in announcer.routes or in a service's routes",
        );
    }

    let native_defaults = announcer.native.unwrap_or_default();
    let mut peers = Vec::new();
    for (index, peer) in announcer.peers.into_iter().enumerate() {
        let path = format!("announcer.peers[{index}]");
        let multihop_ttl = match (peer.multihop_ttl, peer.multihope_ttl) {
            (Some(_), Some(_)) => {
                problems.add(
                    format!("{path}.multihope_ttl"),
                    "both `multihop_ttl` and its misspelling `multihope_ttl` are set; keep `multihop_ttl`",
                );
                None
            }
            (Some(ttl), None) => Some(ttl),
            (None, Some(ttl)) => {
                warnings.push(format!(
                    "{path}.multihope_ttl: read as `multihop_ttl` (the original README's spelling); please rename it"
                ));
                Some(ttl)
            }
            (None, None) => None,
        };
        if peer.name.is_empty() {
            problems.add(format!("{path}.name"), "must not be empty");
        }
        if peer.remote_asn == 0 {
            problems.add(format!("{path}.remote_asn"), "must be a non-zero AS number");
        }
        if multihop_ttl == Some(0) {
            problems.add(
                format!("{path}.multihop_ttl"),
                "must be between 1 and 255 (leave it out for the default)",
            );
        }
        let hold = peer
            .hold_time
            .or(native_defaults.hold_time)
            .map(|d| d.get())
            .unwrap_or(Duration::from_secs(90));
        let hold_key = if peer.hold_time.is_some() {
            format!("{path}.hold_time")
        } else {
            "announcer.native.hold_time".to_string()
        };
        let hold_time = hold_seconds(hold, &hold_key, &mut problems);
        if let Some(password) = &peer.password
            && (password.is_empty() || password.len() > 80)
        {
            problems.add(
                format!("{path}.password"),
                "must be 1 to 80 bytes (the TCP-MD5 key limit)",
            );
        }
        let bfd = resolve_bfd(
            peer.bfd.as_ref(),
            native_defaults.bfd.as_ref(),
            &path,
            &mut problems,
        );
        let local_address = peer.local_address.or(announcer.local_address);
        if let Some(local) = local_address
            && local.is_ipv4() != peer.remote_address.is_ipv4()
        {
            problems.add(
                format!("{path}.local_address"),
                format!(
                    "{local} and remote_address {} are of different address families; set a per-peer local_address",
                    peer.remote_address
                ),
            );
        }
        peers.push(PeerConfig {
            name: peer.name,
            remote_address: peer.remote_address,
            remote_asn: peer.remote_asn,
            enable_multihop: peer.enable_multihop,
            multihop_ttl,
            port: peer.port.or(native_defaults.port).unwrap_or(179),
            local_address,
            password: peer.password,
            passive: peer.passive.or(native_defaults.passive).unwrap_or(false),
            hold_time,
            bfd,
        });
    }

    if announcer.local_asn == Some(0) {
        problems.add("announcer.local_asn", "must be a non-zero AS number");
    }
    if backend == BackendKind::Native {
        let why =
            "required by the native backend (set announcer.backend or --backend to use another)";
        if announcer.router_id.is_none() {
            problems.add("announcer.router_id", why);
        }
        if announcer.local_asn.is_none() {
            problems.add("announcer.local_asn", why);
        }
        if announcer.local_address.is_none() {
            problems.add("announcer.local_address", why);
        }
        if peers.is_empty() {
            problems.add(
                "announcer.peers",
                "at least one peer is required by the native backend",
            );
        }
    }

    let exabgp = resolve_exabgp(announcer.exabgp.unwrap_or_default(), &mut problems);
    let native = NativeConfig {
        local_address6: native_defaults.local_address6,
        shutdown_message: native_defaults
            .shutdown_message
            .unwrap_or_else(|| "anycastd is shutting down".into()),
    };
    if native.shutdown_message.len() > 255 {
        problems.add(
            "announcer.native.shutdown_message",
            "must be at most 255 bytes (RFC 8203)",
        );
    }
    let has_v6 = routes
        .iter()
        .chain(services.iter().flat_map(|s| s.routes.iter()))
        .any(|r| matches!(r, IpNet::V6(_)));
    let bird = announcer
        .bird
        .map(|raw| resolve_bird(raw, has_v6, &mut problems));
    if backend == BackendKind::Native
        && has_v6
        && native.local_address6.is_none()
        && let Some(index) = peers.iter().position(|p| p.remote_address.is_ipv4())
    {
        problems.add(
            "announcer.native.local_address6",
            format!(
                "required for IPv6 routes over the IPv4 session to announcer.peers[{index}]: the IPv6 next hop to announce"
            ),
        );
    }
    if backend == BackendKind::Bird && bird.is_none() {
        problems.add(
            "announcer.bird",
            "required by the bird backend: at least `include_file`",
        );
    }

    let metrics = match raw.metrics {
        None => None,
        Some(RawMetrics { enabled: false, .. }) => None,
        Some(RawMetrics {
            enabled: true,
            address: None,
        }) => {
            problems.add("metrics.address", "required when metrics.enabled is true");
            None
        }
        Some(RawMetrics {
            enabled: true,
            address: Some(address),
        }) => match address.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.add(
                    "metrics.address",
                    format!("expected a listen address such as \"127.0.0.1:9090\" or \"[::1]:9090\", found \"{address}\""),
                );
                None
            }
        },
    };

    let drain = DrainConfig {
        graceful_shutdown: announcer.graceful_shutdown.unwrap_or(false),
        maintenance_file: non_empty_path(announcer.maintenance_file),
        max_withdraw: resolve_max_withdraw(announcer.max_withdraw, &mut problems),
    };
    let control = resolve_control(raw.control, &mut problems, &|var| std::env::var(var).ok());
    if backend == BackendKind::Bird
        && bird
            .as_ref()
            .is_some_and(|b| b.format == BirdFormat::PrefixSet)
        && (announcer.attributes.is_some() || services.iter().any(|s| s.attributes != attributes))
    {
        warnings.push(
            "attributes are not carried by the bird prefix_set format: it lists each state's prefixes in its own set for your BIRD filter to act on (see anycastd.yaml(5))"
                .into(),
        );
    }

    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    Ok(Config {
        source: file.to_path_buf(),
        backend,
        routes,
        services,
        metrics,
        router_id: announcer.router_id,
        local_address: announcer.local_address,
        local_asn: announcer.local_asn,
        peers,
        exabgp,
        bird,
        native,
        attributes,
        drain_time,
        drain,
        control,
        warnings,
    })
}

/// A path key where an empty string means "none".
fn non_empty_path(raw: Option<String>) -> Option<PathBuf> {
    raw.filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// Masks host bits (`10.0.0.1/24` → `10.0.0.0/24`) with a warning, and drops repeats.
fn normalize_routes(routes: &[IpNet], path: &str, warnings: &mut Vec<String>) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, route) in routes.iter().enumerate() {
        let network = route.trunc();
        if network != *route {
            warnings.push(format!(
                "{path}[{index}]: {route} has host bits set; announcing {network}"
            ));
        }
        if seen.insert(network) {
            out.push(network);
        }
    }
    out
}

fn resolve_service(
    service: RawService,
    path: &str,
    defaults: &ServiceDefaults<'_>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<ServiceConfig> {
    let before = problems.0.len();
    if service.name.is_empty() {
        problems.add(format!("{path}.name"), "must not be empty");
    }
    if service.check_interval.get().is_zero() {
        problems.add(format!("{path}.check_interval"), "must be longer than zero");
    }
    let strategy = resolve_strategy(
        service.strategy.as_deref(),
        service.strategy_options,
        path,
        problems,
    );
    if service.checks.is_empty() {
        problems.add(format!("{path}.checks"), "at least one check is required");
    }
    for (key, value) in [("rise", service.rise), ("fall", service.fall)] {
        if value == Some(0) {
            problems.add(format!("{path}.{key}"), "must be at least 1");
        }
    }

    let mut checks = Vec::new();
    let mut kind_seen: HashMap<CheckKind, usize> = HashMap::new();
    let mut explicit_names: BTreeMap<String, usize> = BTreeMap::new();
    for (index, check) in service.checks.into_iter().enumerate() {
        let check_path = format!("{path}.checks[{index}]");
        let name = match &check.name {
            Some(name) => {
                if let Some(first) = explicit_names.insert(name.clone(), index) {
                    problems.add(
                        format!("{check_path}.name"),
                        format!("check name `{name}` is already used by checks[{first}]"),
                    );
                }
                name.clone()
            }
            None => {
                let seen = kind_seen.entry(check.kind).or_insert(0);
                *seen += 1;
                if *seen == 1 {
                    check.kind.as_str().to_string()
                } else {
                    let label = format!("{}_{}", check.kind.as_str(), seen);
                    warnings.push(format!(
                        "{check_path}: a second `{}` check without a `name`; its metric label is `{label}`",
                        check.kind.as_str()
                    ));
                    label
                }
            }
        };
        match resolve_spec(check.kind, check.spec, &format!("{check_path}.spec")) {
            Ok(spec) => {
                validate_spec(&spec, &format!("{check_path}.spec"), problems);
                checks.push(CheckConfig {
                    name,
                    group: check.group.unwrap_or_default(),
                    degrades: check.degrades,
                    spec,
                });
            }
            Err(problem) => problems.0.push(problem),
        }
    }
    let routes = normalize_routes(&service.routes, &format!("{path}.routes"), warnings);
    let attributes = resolve_profiles(
        service.attributes.as_ref(),
        path,
        defaults.attributes,
        defaults.local_asn,
        problems,
    );
    let fast_interval = service.fast_interval.map(ConfigDuration::get);
    if fast_interval.is_some_and(|d| d.is_zero()) {
        problems.add(format!("{path}.fast_interval"), "must be longer than zero");
    }
    if problems.0.len() != before {
        return None;
    }
    Some(ServiceConfig {
        name: service.name,
        check_interval: service.check_interval.get(),
        strategy: strategy?,
        checks,
        routes,
        rise: service.rise.unwrap_or(1),
        fall: service.fall.unwrap_or(1),
        attributes,
        drain_time: service
            .drain_time
            .map(ConfigDuration::get)
            .unwrap_or(defaults.drain_time),
        maintenance_file: non_empty_path(service.maintenance_file),
        fast_interval,
        announce_delay: service
            .announce_delay
            .map(ConfigDuration::get)
            .unwrap_or_default(),
    })
}

const STRATEGIES: [&str; 4] = [
    "at_least_one",
    "all",
    "all_in_group",
    "at_least_n_percentage",
];

fn resolve_strategy(
    name: Option<&str>,
    options: Option<serde_json::Value>,
    path: &str,
    problems: &mut Problems,
) -> Option<Strategy> {
    let strategy = match name.unwrap_or("") {
        "" | "at_least_one" => Strategy::AtLeastOne,
        "all" => Strategy::All,
        "all_in_group" => Strategy::AllInGroup,
        "at_least_n_percentage" => {
            let options_path = format!("{path}.strategy_options");
            let n = options
                .as_ref()
                .and_then(|o| o.as_object())
                .and_then(|o| o.get("n"))
                .and_then(|n| n.as_f64());
            match n {
                Some(n) if (0.0..=1.0).contains(&n) => Strategy::AtLeastNPercentage(n),
                Some(n) => {
                    problems.add(
                        format!("{options_path}.n"),
                        format!("expected a fraction between 0 and 1 (0.5 = 50%), found {n}"),
                    );
                    return None;
                }
                None => {
                    problems.add(
                        format!("{options_path}.n"),
                        "at_least_n_percentage needs `strategy_options: {n: <fraction>}`, e.g. {n: 0.5}",
                    );
                    return None;
                }
            }
        }
        other => {
            problems.add(
                format!("{path}.strategy"),
                unknown_message("strategy", other, &STRATEGIES),
            );
            return None;
        }
    };
    Some(strategy)
}

fn resolve_spec(
    kind: CheckKind,
    spec: serde_json::Value,
    path: &str,
) -> Result<CheckSpec, Problem> {
    Ok(match kind {
        CheckKind::AssignedAddress => CheckSpec::AssignedAddress(decode(spec, path)?),
        CheckKind::DnsLookup => CheckSpec::DnsLookup(decode(spec, path)?),
        CheckKind::Http2xx => CheckSpec::Http2xx(decode(spec, path)?),
        CheckKind::IcmpPing => CheckSpec::IcmpPing(decode(spec, path)?),
        CheckKind::TftpRrq => CheckSpec::TftpRrq(decode(spec, path)?),
        CheckKind::Ntpq => CheckSpec::Ntpq(decode(spec, path)?),
        CheckKind::TlsCertificate => CheckSpec::TlsCertificate(decode(spec, path)?),
        CheckKind::TcpConnect => CheckSpec::TcpConnect(decode(spec, path)?),
        CheckKind::File => CheckSpec::File(decode(spec, path)?),
        CheckKind::Listening => CheckSpec::Listening(decode(spec, path)?),
        CheckKind::GrpcHealth => CheckSpec::GrpcHealth(decode(spec, path)?),
    })
}

/// Rules on a kind's values that serde's types cannot say.
fn validate_spec(spec: &CheckSpec, path: &str, problems: &mut Problems) {
    let at = |key: &str| join_path(path, key);
    let attempts = |problems: &mut Problems,
                    tries: u8,
                    interval: &ConfigDuration,
                    timeout: &ConfigDuration| {
        if tries == 0 {
            problems.add(at("tries"), "must be at least 1");
        }
        if interval.get().is_zero() {
            problems.add(at("interval"), "must be longer than zero");
        }
        if timeout.get().is_zero() {
            problems.add(at("timeout"), "must be longer than zero");
        }
    };
    match spec {
        CheckSpec::AssignedAddress(s) => {
            if s.ipv4.is_none() && s.ipv6.is_none() {
                problems.add(
                    path,
                    "needs `ipv4` or `ipv6`: the address that must be assigned",
                );
            }
            if s.interface.as_deref() == Some("") {
                problems.add(
                    at("interface"),
                    "must not be empty (leave it out for any interface)",
                );
            }
        }
        CheckSpec::DnsLookup(s) => {
            attempts(problems, s.tries, &s.interval, &s.timeout);
            if s.query.parse::<IpAddr>().is_ok() || !is_dns_name(&s.query) {
                problems.add(
                    at("query"),
                    format!("expected a DNS name, found \"{}\"", s.query),
                );
            }
            if let Some(rcode) = &s.expect_rcode
                && crate::checks::rcode_from_name(rcode).is_none()
            {
                problems.add(
                    at("expect_rcode"),
                    unknown_message("response code", rcode, &crate::checks::RCODE_NAMES),
                );
            }
            let rcode_is_error = s
                .expect_rcode
                .as_deref()
                .and_then(crate::checks::rcode_from_name)
                .is_some_and(|code| code != 0);
            if rcode_is_error && !s.expect_answers.is_empty() {
                problems.add(
                    at("expect_answers"),
                    "cannot be met with an error `expect_rcode`: such answers are empty",
                );
            }
            for (index, answer) in s.expect_answers.iter().enumerate() {
                if answer.parse::<IpAddr>().is_err() && !is_dns_name(answer) {
                    problems.add(
                        at(&format!("expect_answers[{index}]")),
                        format!("expected an IP address or a DNS name, found \"{answer}\""),
                    );
                }
            }
            if split_host_port(&s.resolver).is_none() {
                problems.add(
                    at("resolver"),
                    format!(
                        "expected host:port such as \"127.0.0.1:53\", found \"{}\"",
                        s.resolver
                    ),
                );
            }
        }
        CheckSpec::Http2xx(s) => {
            attempts(problems, s.tries, &s.interval, &s.timeout);
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                problems.add(
                    at("url"),
                    format!("expected an http:// or https:// URL, found \"{}\"", s.url),
                );
            }
            if s.method.is_empty() || !s.method.bytes().all(|b| b.is_ascii_alphabetic()) {
                problems.add(
                    at("method"),
                    format!(
                        "expected an HTTP method such as GET, found \"{}\"",
                        s.method
                    ),
                );
            }
            for (index, entry) in s.expect_status.iter().enumerate() {
                if let Err(message) = entry.range() {
                    problems.add(at(&format!("expect_status[{index}]")), message);
                }
            }
            if s.expect_body.as_deref() == Some("") {
                problems.add(
                    at("expect_body"),
                    "must not be empty (leave it out to accept any body)",
                );
            }
            if let Some(pattern) = &s.expect_body_regex
                && let Err(e) = regex::bytes::Regex::new(pattern)
            {
                let e = e.to_string();
                let first = e.lines().last().unwrap_or("").trim();
                problems.add(
                    at("expect_body_regex"),
                    format!("invalid regular expression \"{pattern}\": {first}"),
                );
            }
            let https = s.url.starts_with("https://");
            if let Some(name) = &s.server_name
                && (name.parse::<IpAddr>().is_ok() || !is_dns_name(name))
            {
                problems.add(
                    at("server_name"),
                    format!("expected a DNS name, found \"{name}\""),
                );
            }
            if s.server_name.is_some() && !https {
                problems.add(at("server_name"), "only applies to https:// URLs");
            }
            if let Some(file) = &s.ca_file {
                if !https {
                    problems.add(at("ca_file"), "only applies to https:// URLs");
                } else if file.is_empty() {
                    problems.add(at("ca_file"), "must not be empty");
                }
            }
        }
        CheckSpec::IcmpPing(s) => {
            attempts(problems, s.tries, &s.interval, &s.timeout);
            if s.target.host.is_empty() {
                problems.add(at("static.host"), "must not be empty");
            }
        }
        CheckSpec::TftpRrq(s) => {
            attempts(problems, s.tries, &s.interval, &s.timeout);
            if !s.url.starts_with("tftp://") {
                problems.add(
                    at("url"),
                    format!(
                        "expected a tftp://host[:port]/path URL, found \"{}\"",
                        s.url
                    ),
                );
            }
            if let Some(sum) = &s.expected_sha256
                && (sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                problems.add(at("expected_sha256"), "expected 64 hexadecimal characters");
            }
        }
        CheckSpec::Ntpq(s) => {
            attempts(problems, s.tries, &s.interval, &s.timeout);
            if s.offset_threshold.get().is_zero() {
                problems.add(at("offset_threshold"), "must be longer than zero");
            }
            if s.server.is_empty() {
                problems.add(at("server"), "must not be empty");
            }
        }
        CheckSpec::TcpConnect(s) => {
            attempts(problems, s.tries, &s.interval, &s.timeout);
            if s.host.is_empty() || (s.host.parse::<IpAddr>().is_err() && !is_dns_name(&s.host)) {
                problems.add(
                    at("host"),
                    format!("expected an IP address or a DNS name, found \"{}\"", s.host),
                );
            }
            if s.port == 0 {
                problems.add(at("port"), "must be 1 to 65535");
            }
            if s.send.as_deref() == Some("") {
                problems.add(
                    at("send"),
                    "must not be empty (leave it out to send nothing)",
                );
            }
            if s.expect.as_deref() == Some("") {
                problems.add(
                    at("expect"),
                    "must not be empty (leave it out to expect nothing)",
                );
            }
            if let Some(expect) = &s.expect
                && expect.len() > crate::checks::TCP_EXPECT_MAX_BYTES
            {
                problems.add(
                    at("expect"),
                    format!(
                        "is longer than the {} bytes the check reads",
                        crate::checks::TCP_EXPECT_MAX_BYTES
                    ),
                );
            }
        }
        CheckSpec::File(s) => {
            if s.path.is_empty() {
                problems.add(at("path"), "must not be empty");
            } else if !Path::new(&s.path).is_absolute() {
                problems.add(
                    at("path"),
                    format!("expected an absolute path, found \"{}\"", s.path),
                );
            }
            if s.contains.as_deref() == Some("") {
                problems.add(
                    at("contains"),
                    "must not be empty (leave it out for any content)",
                );
            }
            if let Some(word) = &s.contains
                && word.len() > crate::checks::FILE_READ_MAX_BYTES
            {
                problems.add(
                    at("contains"),
                    format!(
                        "is longer than the {} bytes the check reads",
                        crate::checks::FILE_READ_MAX_BYTES
                    ),
                );
            }
            if s.max_age.is_some_and(|t| t.get().is_zero()) {
                problems.add(at("max_age"), "must be longer than zero");
            }
        }
        CheckSpec::Listening(s) => {
            if s.port == 0 {
                problems.add(at("port"), "must be a port from 1 to 65535");
            }
        }
        CheckSpec::TlsCertificate(s) => {
            if s.local.is_none() && s.remote.is_none() {
                problems.add(path, "needs `local.path` or `remote.host`");
            }
            if let Some(remote) = &s.remote
                && split_host_port(&remote.host).is_none()
            {
                problems.add(
                    at("remote.host"),
                    format!(
                        "expected host:port such as \"example.org:443\", found \"{}\"",
                        remote.host
                    ),
                );
            }
            for (index, name) in s.dns_names.iter().enumerate() {
                let bare = name.strip_prefix("*.").unwrap_or(name);
                if !is_dns_name(bare) {
                    problems.add(
                        at(&format!("dns_names[{index}]")),
                        format!("expected a DNS name, found \"{name}\""),
                    );
                }
            }
            if s.timeout.is_some_and(|t| t.get().is_zero()) {
                problems.add(at("timeout"), "must be longer than zero");
            }
        }
        CheckSpec::GrpcHealth(s) => {
            attempts(problems, s.tries, &s.interval, &s.timeout);
            if split_host_port(&s.address).is_none() {
                problems.add(
                    at("address"),
                    format!(
                        "expected host:port such as \"127.0.0.1:50051\", found \"{}\"",
                        s.address
                    ),
                );
            }
            if !s.tls {
                for (key, set) in [
                    ("server_name", s.server_name.is_some()),
                    ("ca_file", s.ca_file.is_some()),
                ] {
                    if set {
                        problems.add(at(key), "only applies with `tls: true`");
                    }
                }
            }
            if s.server_name.as_deref() == Some("") {
                problems.add(at("server_name"), "must not be empty");
            }
            if s.ca_file.as_deref() == Some("") {
                problems.add(at("ca_file"), "must not be empty");
            }
        }
    }
}

/// Splits `host:port` or `[v6]:port`; the port is required.
pub(crate) fn split_host_port(text: &str) -> Option<(String, u16)> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.is_empty() || host.contains(':') || !is_dns_name(host) {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn resolve_exabgp(raw: RawExabgp, problems: &mut Problems) -> ExabgpConfig {
    let mut next_hop = |key: &str, value: Option<String>, want_v4: bool| -> NextHop {
        let Some(value) = value else {
            return NextHop::SelfAddress;
        };
        if value == "self" {
            return NextHop::SelfAddress;
        }
        match value.parse::<IpAddr>() {
            Ok(ip) if ip.is_ipv4() == want_v4 => NextHop::Address(ip),
            _ => {
                let family = if want_v4 { "IPv4" } else { "IPv6" };
                problems.add(
                    format!("announcer.exabgp.{key}"),
                    format!("expected `self` or an {family} address, found \"{value}\""),
                );
                NextHop::SelfAddress
            }
        }
    };
    ExabgpConfig {
        next_hop: next_hop("next_hop", raw.next_hop, true),
        next_hop6: next_hop("next_hop6", raw.next_hop6, false),
        shutdown_timeout: raw
            .shutdown_timeout
            .map(ConfigDuration::get)
            .unwrap_or(Duration::from_secs(2)),
    }
}

fn resolve_bird(raw: RawBird, has_v6: bool, problems: &mut Problems) -> BirdConfig {
    let format = raw.format.unwrap_or_default();
    let path = |key: &str, value: &str, problems: &mut Problems| -> PathBuf {
        let p = PathBuf::from(value);
        if !p.is_absolute() {
            problems.add(
                format!("announcer.bird.{key}"),
                format!("expected an absolute path, found \"{value}\""),
            );
        }
        p
    };
    let include_file = path("include_file", &raw.include_file, problems);
    let include_file6 = raw
        .include_file6
        .as_deref()
        .map(|f| path("include_file6", f, problems));
    match (format, &include_file6) {
        (BirdFormat::Static, None) if has_v6 => problems.add(
            "announcer.bird.include_file6",
            "required for IPv6 routes with the static format (a BIRD static protocol has one channel: include this file in an ipv6 one)",
        ),
        (BirdFormat::Static, Some(six)) if *six == include_file => problems.add(
            "announcer.bird.include_file6",
            "must differ from include_file",
        ),
        (BirdFormat::PrefixSet, Some(_)) => problems.add(
            "announcer.bird.include_file6",
            "only used by the static format; the prefix_set format writes both sets to include_file",
        ),
        _ => {}
    }
    let variable = raw.variable.unwrap_or_else(|| "ANYCASTD_PREFIXES".into());
    // The derived names are valid whenever the base is: check what was written.
    for (key, name) in [
        ("variable", Some(&variable)),
        ("variable_v4", raw.variable_v4.as_ref()),
        ("variable_v6", raw.variable_v6.as_ref()),
    ] {
        if let Some(name) = name
            && !bird_symbol(name)
        {
            problems.add(
                format!("announcer.bird.{key}"),
                format!("expected a BIRD symbol name (letters, digits, _), found \"{name}\""),
            );
        }
    }
    let set_v4 = raw.variable_v4.unwrap_or_else(|| format!("{variable}_V4"));
    let set_v6 = raw.variable_v6.unwrap_or_else(|| format!("{variable}_V6"));
    if set_v4 == set_v6 {
        problems.add(
            "announcer.bird.variable_v6",
            format!("must differ from the IPv4 set's name, both are \"{set_v4}\""),
        );
    }
    if let Some(argv) = &raw.reload_command
        && argv.first().is_none_or(|a| a.is_empty())
    {
        problems.add(
            "announcer.bird.reload_command",
            "expected a program and its arguments, e.g. [\"/usr/sbin/birdc\", \"configure\"]",
        );
    }
    let reconfigure_timeout = raw
        .reconfigure_timeout
        .map(ConfigDuration::get)
        .unwrap_or(Duration::from_secs(10));
    if reconfigure_timeout.is_zero() {
        problems.add(
            "announcer.bird.reconfigure_timeout",
            "must be longer than zero",
        );
    }
    BirdConfig {
        include_file,
        include_file6,
        socket: PathBuf::from(raw.socket.unwrap_or_else(|| DEFAULT_BIRD_SOCKET.into())),
        format,
        set_v4,
        set_v6,
        route_kind: raw.route_kind.unwrap_or_default(),
        reload_command: raw.reload_command,
        reconfigure_timeout,
    }
}

/// A name BIRD takes for a `define`: letters, digits and `_`, not starting with a digit.
fn bird_symbol(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A hold time in whole seconds: 0 (no keepalives) or 3 to 65535 (RFC 4271 §4.2).
/// A peer's BFD: its own `bfd` block field by field over
/// `announcer.native.bfd`; enabled where either block is given, unless
/// `enabled: false`.
fn resolve_bfd(
    own: Option<&super::model::RawBfd>,
    defaults: Option<&super::model::RawBfd>,
    path: &str,
    problems: &mut Problems,
) -> Option<BfdSettings> {
    if own.is_none() && defaults.is_none() {
        return None;
    }
    let pick = |f: fn(&super::model::RawBfd) -> Option<ConfigDuration>| {
        own.and_then(f)
            .map(|d| (d.get(), format!("{path}.bfd")))
            .or_else(|| {
                defaults
                    .and_then(f)
                    .map(|d| (d.get(), "announcer.native.bfd".to_string()))
            })
    };
    let enabled = own
        .and_then(|b| b.enabled)
        .or(defaults.and_then(|b| b.enabled))
        .unwrap_or(true);
    let mut interval =
        |f: fn(&super::model::RawBfd) -> Option<ConfigDuration>, key: &str| match pick(f) {
            Some((d, at)) if !BFD_INTERVALS.contains(&d) => {
                problems.add(
                    format!("{at}.{key}"),
                    format!(
                        "expected an interval from 10ms to 60s, found {}",
                        super::format_duration(d)
                    ),
                );
                BFD_DEFAULT_INTERVAL
            }
            Some((d, _)) => d,
            None => BFD_DEFAULT_INTERVAL,
        };
    let min_tx = interval(|b| b.min_tx, "min_tx");
    let min_rx = interval(|b| b.min_rx, "min_rx");
    let multiplier = match own
        .and_then(|b| b.multiplier)
        .map(|m| (m, format!("{path}.bfd")))
        .or_else(|| {
            defaults
                .and_then(|b| b.multiplier)
                .map(|m| (m, "announcer.native.bfd".to_string()))
        }) {
        Some((0, at)) => {
            problems.add(format!("{at}.multiplier"), "expected 1 to 255, found 0");
            BFD_DEFAULT_MULTIPLIER
        }
        Some((m, _)) => m,
        None => BFD_DEFAULT_MULTIPLIER,
    };
    enabled.then_some(BfdSettings {
        min_tx,
        min_rx,
        multiplier,
    })
}

fn hold_seconds(hold: Duration, key: &str, problems: &mut Problems) -> u16 {
    let secs = hold.as_secs();
    if hold.subsec_nanos() != 0 || secs == 1 || secs == 2 || secs > u64::from(u16::MAX) {
        problems.add(
            key,
            format!(
                "expected 0 or whole seconds from 3s to 65535s, found {}",
                super::format_duration(hold)
            ),
        );
        return 90;
    }
    secs as u16
}
