//! What the daemon believes right now, for operators: each service's state,
//! each check's last verdict, the desired routes, what each backend
//! announces, and the native backend's peers (BGP and BFD sessions).
//! Served as JSON at `GET /status` on the metrics listener and printed by
//! `anycastd status`.
//!
//! ```text
//!  backends ── AnnouncedReporter, PeerReporter (watches) ──┐
//!                                                          ▼
//!  engine loop (the owner) ── record_round / set_state / set_desired /
//!                             set_announced / set_peers / apply_config
//!                                       ──► StatusBoard ──► GET /status
//!                                           (RwLock)       (report → JSON)
//! ```
//!
//! The board is the engine loop's view: only it writes, from what the core
//! decided and what the backends reported to it. Writers hold the lock
//! only to copy a few values; readers take a [`StatusReport`] snapshot.
//!
//! The client half ([`fetch`], [`render`]) is what `anycastd status` uses: a
//! plain HTTP/1.0 GET over a blocking socket and a text table.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{Config, format_duration};

pub mod page;
use crate::route::{AnnouncedRoutes, RouteSet};

/// A service's state as `/status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No decision yet: no round finished, or rise/fall not reached from startup.
    Unknown,
    Up,
    /// Serving, but announced so that others are preferred.
    Degraded,
    /// Drained by the operator: announced with GRACEFUL_SHUTDOWN until
    /// `drain_time` ends.
    Draining,
    /// Drained by the operator, routes withdrawn.
    Drained,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Degraded => "degraded",
            State::Draining => "draining",
            State::Drained => "drained",
            State::Down => "down",
        }
    }
}

/// A check's verdict in its service's last round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The check has not finished a round yet.
    Unknown,
    Pass,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

/// One check, as of its service's last round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckStatus {
    pub name: String,
    pub verdict: Verdict,
    /// Why it failed; empty when it passed or has not run.
    pub reason: String,
    /// How long the last round of this check took, all tries included;
    /// `null` before it has run.
    pub duration_ms: Option<f64>,
    /// Its last [`HISTORY_ROUNDS`] rounds, for the status page (not in the
    /// JSON).
    #[serde(skip)]
    pub history: History,
}

/// Rounds of each check kept for the status page.
pub const HISTORY_ROUNDS: usize = 100;
/// State changes kept for the status page and `/status`.
pub const CHANGES_KEPT: usize = 100;
/// The longest reason a state change keeps (characters).
const CHANGE_REASON_MAX: usize = 300;

/// A check's last rounds, oldest first, 4 bytes each: whether it passed
/// (the top bit) and how long it took (µs, capped at 2^31 − 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History(std::collections::VecDeque<u32>);

impl History {
    const PASSED: u32 = 1 << 31;

    /// Adds a round, dropping the oldest beyond [`HISTORY_ROUNDS`].
    pub fn push(&mut self, passed: bool, duration: Duration) {
        if self.0.capacity() == 0 {
            self.0.reserve_exact(HISTORY_ROUNDS);
        }
        if self.0.len() == HISTORY_ROUNDS {
            self.0.pop_front();
        }
        let micros = u32::try_from(duration.as_micros())
            .unwrap_or(u32::MAX)
            .min(Self::PASSED - 1);
        self.0
            .push_back(micros | if passed { Self::PASSED } else { 0 });
    }

    /// Each round, oldest first: passed, and its duration in µs.
    pub fn rounds(&self) -> impl ExactSizeIterator<Item = (bool, u32)> + '_ {
        self.0
            .iter()
            .map(|r| (r & Self::PASSED != 0, r & !Self::PASSED))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Rise or fall under way: `rounds` of `needed` toward `toward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiseFall {
    pub rounds: u32,
    pub needed: u32,
    pub toward: State,
}

/// A service's state change, for the log of recent ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Unix time, ms.
    pub at_ms: u64,
    pub service: String,
    pub from: State,
    pub to: State,
    pub reason: String,
}

/// Now as Unix time in milliseconds.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One service: its state after rise/fall, and its checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub state: State,
    /// Why it is in its state: failing checks, drained by whom, a delay.
    #[serde(default)]
    pub reason: String,
    /// Who drained it: `file`, `cli`, `shutdown`; empty when not drained.
    #[serde(default)]
    pub drained_by: Vec<String>,
    /// While Draining: milliseconds before its routes are withdrawn.
    #[serde(default)]
    pub draining_left_ms: Option<u64>,
    /// While held by `announce_delay`: milliseconds before its routes come back.
    #[serde(default)]
    pub announce_in_ms: Option<u64>,
    /// Rounds finished since the service (re)started; 0 before the first verdict.
    pub rounds: u64,
    /// Since when it is in its state (Unix time, ms): its last state
    /// change, or when it was configured.
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Rise or fall under way, if any.
    #[serde(default)]
    pub rise_fall: Option<RiseFall>,
    pub checks: Vec<CheckStatus>,
    /// When draining ends and the hold lifts, turned into the `_ms` fields
    /// when a report is taken.
    #[serde(skip)]
    pub deadlines: (Option<Instant>, Option<Instant>),
}

/// A service's operator-facing details besides its state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceDetails {
    pub reason: String,
    pub drained_by: Vec<String>,
    pub draining_until: Option<Instant>,
    pub held_until: Option<Instant>,
    pub rise_fall: Option<RiseFall>,
}

/// The routes: what the engine wants and what each backend announces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// Every route the configuration names (announcer.routes and the
    /// services' routes).
    pub configured: BTreeSet<IpNet>,
    /// Routes whose protecting services are all up (shared with the
    /// engine: setting it copies nothing).
    /// Each desired route and how it is announced (`up`, `degraded` or
    /// `draining`, then its attributes).
    pub desired: Arc<RouteSet>,
    /// Per backend name, the routes it announces (as far as it knows).
    pub announced: BTreeMap<String, BTreeSet<IpNet>>,
}

/// The whole of `GET /status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// anycastd's version.
    pub version: String,
    /// In configuration order.
    pub services: Vec<ServiceStatus>,
    pub routes: RouteStatus,
    /// The native backend's BGP peers by name: session and BFD states.
    #[serde(default)]
    pub peers: crate::peers::PeerStatuses,
    /// Recent state changes, newest first, at most [`CHANGES_KEPT`].
    #[serde(default)]
    pub changes: std::collections::VecDeque<Change>,
    /// Where each service is in `services`: the engine writes a service's
    /// round 1,000s of times a second, a scan per write would cost O(n²).
    #[serde(skip)]
    index: std::collections::HashMap<String, usize>,
}

impl Default for StatusReport {
    fn default() -> StatusReport {
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            services: Vec::new(),
            routes: RouteStatus::default(),
            peers: Default::default(),
            changes: Default::default(),
            index: Default::default(),
        }
    }
}

impl PartialEq for StatusReport {
    /// What the report says; the lookup index is not part of it.
    fn eq(&self, other: &StatusReport) -> bool {
        self.version == other.version
            && self.services == other.services
            && self.routes == other.routes
            && self.peers == other.peers
            && self.changes == other.changes
    }
}

impl StatusReport {
    fn service_mut(&mut self, name: &str) -> Option<&mut ServiceStatus> {
        let at = *self.index.get(name)?;
        self.services.get_mut(at)
    }

    /// Whether every service is up (and there is at least one).
    pub fn all_up(&self) -> bool {
        !self.services.is_empty() && self.services.iter().all(|s| s.state == State::Up)
    }
}

/// A shared, cheaply cloned handle to the current status.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<RwLock<StatusReport>>, Arc<PageCache>);

/// How long a rendered status page is served again: `GET /` costs one
/// render a second at most, however often and by however many it is
/// asked for (9 ms of CPU at 1,000 services), so nobody polling it can
/// take CPU from the checks.
pub const PAGE_MAX_AGE: Duration = Duration::from_secs(1);

/// The last rendered page and when.
#[derive(Debug, Default)]
pub struct PageCache(std::sync::Mutex<Option<(Instant, Arc<String>)>>);

impl StatusBoard {
    pub fn new() -> StatusBoard {
        StatusBoard::default()
    }

    fn write(&self, f: impl FnOnce(&mut StatusReport)) {
        // A writer that panicked left plain data behind; keep serving it.
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    /// A copy of the current status.
    pub fn report(&self) -> StatusReport {
        let mut report = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        let now = Instant::now();
        let left =
            |at: Option<Instant>| at.map(|at| at.saturating_duration_since(now).as_millis() as u64);
        for service in &mut report.services {
            service.draining_left_ms = left(service.deadlines.0);
            service.announce_in_ms = left(service.deadlines.1);
        }
        report
    }

    /// The status page (HTML), rendered at most once per [`PAGE_MAX_AGE`].
    /// Requests that come while it renders wait for that render.
    pub fn page(&self) -> Arc<String> {
        let mut cache = (self.1).0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, page)) = cache.as_ref()
            && at.elapsed() < PAGE_MAX_AGE
        {
            return page.clone();
        }
        let page = Arc::new(page::render(&self.report(), unix_now_ms()));
        *cache = Some((Instant::now(), page.clone()));
        page
    }

    /// The current status as JSON.
    pub fn to_json(&self) -> String {
        // Plain structs of strings, numbers and prefixes: this cannot fail.
        serde_json::to_string_pretty(&self.report()).unwrap_or_default() + "\n"
    }

    /// Takes a (new) config: services in its order. A service that keeps its
    /// name keeps its state (as the engine's route book does) and the last
    /// verdicts of the checks that keep theirs.
    pub fn apply_config(&self, config: &Config) {
        self.write(|report| {
            report.routes.configured = config.all_routes().into_iter().collect();
            let mut old: BTreeMap<String, ServiceStatus> = report
                .services
                .drain(..)
                .map(|s| (s.name.clone(), s))
                .collect();
            for service in &config.services {
                let previous = old.remove(&service.name);
                let checks = service
                    .checks
                    .iter()
                    .map(|check| {
                        previous
                            .as_ref()
                            .and_then(|p| p.checks.iter().find(|c| c.name == check.name))
                            .cloned()
                            .unwrap_or_else(|| CheckStatus {
                                name: check.name.clone(),
                                verdict: Verdict::Unknown,
                                reason: String::new(),
                                duration_ms: None,
                                history: History::default(),
                            })
                    })
                    .collect();
                let details = previous.as_ref().map(|p| ServiceDetails {
                    reason: p.reason.clone(),
                    drained_by: p.drained_by.clone(),
                    draining_until: p.deadlines.0,
                    held_until: p.deadlines.1,
                    rise_fall: p.rise_fall,
                });
                let details = details.unwrap_or_default();
                report.services.push(ServiceStatus {
                    name: service.name.clone(),
                    state: previous.as_ref().map_or(State::Unknown, |p| p.state),
                    reason: details.reason,
                    drained_by: details.drained_by,
                    draining_left_ms: None,
                    announce_in_ms: None,
                    rounds: previous.as_ref().map_or(0, |p| p.rounds),
                    since_ms: previous
                        .as_ref()
                        .map_or(Some(unix_now_ms()), |p| p.since_ms),
                    rise_fall: details.rise_fall,
                    checks,
                    deadlines: (details.draining_until, details.held_until),
                });
            }
            report.index = report
                .services
                .iter()
                .enumerate()
                .map(|(at, s)| (s.name.clone(), at))
                .collect();
        });
    }

    /// Records a finished round of `service`: its checks, and its state after it.
    pub fn record_round(&self, service: &str, checks: Vec<CheckStatus>, state: State) {
        self.write(|report| {
            let Some(entry) = report.service_mut(service) else {
                return;
            };
            entry.state = state;
            entry.rounds += 1;
            let mut old = std::mem::take(&mut entry.checks);
            entry.checks = checks;
            for (at, check) in entry.checks.iter_mut().enumerate() {
                // Checks keep their order: look at the same place first.
                let previous = match old.get_mut(at) {
                    Some(p) if p.name == check.name => Some(p),
                    _ => old.iter_mut().find(|p| p.name == check.name),
                };
                if let Some(previous) = previous {
                    check.history = std::mem::take(&mut previous.history);
                }
                if let (Verdict::Pass | Verdict::Fail, Some(ms)) =
                    (check.verdict, check.duration_ms)
                {
                    check.history.push(
                        check.verdict == Verdict::Pass,
                        Duration::from_secs_f64(ms.max(0.0) / 1000.0),
                    );
                }
            }
        });
    }

    /// Records a state change (from a round, a drain, or a stale service):
    /// the state, since when, and an entry in the log of recent changes.
    pub fn transition(&self, service: &str, from: State, to: State, reason: &str) {
        let at_ms = unix_now_ms();
        self.write(|report| {
            if let Some(entry) = report.service_mut(service) {
                entry.state = to;
                entry.since_ms = Some(at_ms);
            }
            let reason = match reason.char_indices().nth(CHANGE_REASON_MAX) {
                Some((cut, _)) => format!("{}…", &reason[..cut]),
                None => reason.to_string(),
            };
            report.changes.push_front(Change {
                at_ms,
                service: service.to_string(),
                from,
                to,
                reason,
            });
            report.changes.truncate(CHANGES_KEPT);
        });
    }

    /// Records why a service is in its state, who drained it and its timers.
    pub fn set_details(&self, service: &str, details: ServiceDetails) {
        self.write(|report| {
            if let Some(entry) = report.service_mut(service) {
                entry.reason = details.reason;
                entry.drained_by = details.drained_by;
                entry.deadlines = (details.draining_until, details.held_until);
                entry.rise_fall = details.rise_fall;
            }
        });
    }

    pub fn set_desired(&self, routes: Arc<RouteSet>) {
        self.write(|report| report.routes.desired = routes);
    }

    /// The native backend's peers, as it reported them.
    pub fn set_peers(&self, peers: crate::peers::PeerStatuses) {
        self.write(|report| report.peers = peers);
    }

    /// What each backend (or native peer) announces, as they reported it.
    pub fn set_announced(&self, announced: &AnnouncedRoutes) {
        self.write(|report| report.routes.announced.clone_from(announced));
    }
}

/// Milliseconds with microsecond precision, so JSON stays short.
pub fn round_ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

// ---- client: `anycastd status` ------------------------------------------

/// Why `/status` could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not `http://HOST:PORT[/PATH]`.
    #[error("invalid status URL `{0}`: expected http://HOST:PORT[/PATH]")]
    Url(String),
    /// Name resolution or the TCP connection failed.
    #[error("cannot connect to {address}: {error}")]
    Connect {
        address: String,
        error: std::io::Error,
    },
    /// The connection broke while talking.
    #[error("{address}: {error}")]
    Io {
        address: String,
        error: std::io::Error,
    },
    /// The server answered, but not with 200 and a status document.
    #[error("{url}: {message}")]
    Response { url: String, message: String },
}

/// Where the daemon serves `/status`: its metrics address, with an
/// unspecified address (`0.0.0.0`, `::`) read as loopback.
pub fn url_for(metrics: SocketAddr) -> String {
    let mut address = metrics;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{address}/status")
}

/// Splits `http://host:port[/path]` into the address and the path
/// (`/status` when none is given).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || !authority.contains(':') || authority.ends_with(':') {
        return None;
    }
    let path = if path.is_empty() || path == "/" {
        "/status"
    } else {
        path
    };
    Some((authority.to_string(), path.to_string()))
}

/// Fetches and parses the status document at `url`, each step bounded by `timeout`.
pub fn fetch(url: &str, timeout: Duration) -> Result<StatusReport, FetchError> {
    let (authority, path) = split_url(url).ok_or_else(|| FetchError::Url(url.to_string()))?;
    let connect = |error| FetchError::Connect {
        address: authority.clone(),
        error,
    };
    let candidates: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(connect)?
        .collect::<Vec<_>>();
    let mut last_error = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for candidate in candidates {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let mut stream = stream.ok_or_else(|| connect(last_error))?;
    let io = |error| FetchError::Io {
        address: authority.clone(),
        error,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(io)?;
    parse_response(&response).map_err(|message| FetchError::Response {
        url: url.to_string(),
        message,
    })
}

/// Reads an HTTP/1.x response carrying a status document.
fn parse_response(response: &[u8]) -> Result<StatusReport, String> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("not an HTTP response (is this anycastd's metrics address?)")?;
    let status_line = head.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!(
            "server answered `{status_line}` (is this anycastd's metrics address, and a version with /status?)"
        ));
    }
    serde_json::from_str(body).map_err(|e| format!("not a status document: {e}"))
}

/// A service's state with who drained it and the time left, as
/// `draining (cli, 25s left)`.
fn state_text(service: &ServiceStatus) -> String {
    let mut notes = service.drained_by.clone();
    if let Some(ms) = service.draining_left_ms {
        notes.push(format!(
            "{} left",
            format_duration(Duration::from_secs(ms.div_ceil(1000)))
        ));
    }
    if let Some(ms) = service.announce_in_ms {
        notes.push(format!(
            "announced in {}",
            format_duration(Duration::from_secs(ms.div_ceil(1000)))
        ));
    }
    if notes.is_empty() {
        service.state.as_str().to_string()
    } else {
        format!("{} ({})", service.state.as_str(), notes.join(", "))
    }
}

/// The status as text: a table of services and checks, then one of routes.
pub fn render(report: &StatusReport) -> String {
    let mut rows = vec![
        ["SERVICE", "STATE", "CHECK", "VERDICT", "DURATION", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for service in &report.services {
        if service.checks.is_empty() {
            rows.push(vec![service.name.clone(), state_text(service)]);
        }
        for check in &service.checks {
            rows.push(vec![
                service.name.clone(),
                state_text(service),
                check.name.clone(),
                check.verdict.as_str().into(),
                check
                    .duration_ms
                    .map(|ms| format_duration(Duration::from_micros((ms * 1000.0).round() as u64)))
                    .unwrap_or_default(),
                check.reason.clone(),
            ]);
        }
    }
    let mut out = table(&rows);
    out.push('\n');

    let mut routes: BTreeSet<IpNet> = report.routes.configured.clone();
    routes.extend(report.routes.desired.keys().copied());
    for announced in report.routes.announced.values() {
        routes.extend(announced);
    }
    let mut rows = vec![["ROUTE", "DESIRED", "ANNOUNCED"].map(String::from).to_vec()];
    for route in &routes {
        let by: Vec<&str> = report
            .routes
            .announced
            .iter()
            .filter(|(_, set)| set.contains(route))
            .map(|(backend, _)| backend.as_str())
            .collect();
        rows.push(vec![
            route.to_string(),
            match report.routes.desired.get(route) {
                Some(how) => how.class.as_str(),
                None => "no",
            }
            .into(),
            if by.is_empty() {
                "-".into()
            } else {
                by.join(",")
            },
        ]);
    }
    if routes.is_empty() {
        rows.push(vec!["(none)".into()]);
    }
    out.push_str(&table(&rows));
    if !report.peers.is_empty() {
        out.push('\n');
        out.push_str(&table(&peer_rows(&report.peers)));
    }
    out
}

/// PEER ADDRESS BGP BFD: the BFD column says what it means for BGP.
fn peer_rows(peers: &crate::peers::PeerStatuses) -> Vec<Vec<String>> {
    let mut rows = vec![["PEER", "ADDRESS", "BGP", "BFD"].map(String::from).to_vec()];
    for (name, peer) in peers {
        let bfd = match &peer.bfd {
            None => "-".to_string(),
            Some(b) if b.state == "up" => format!(
                "up (tx {}ms, detection {}ms)",
                b.tx_interval_ms.unwrap_or(0.0),
                b.detection_time_ms.unwrap_or(0.0)
            ),
            Some(b) if b.path == "down" => {
                format!("{}, holds BGP down (last: {})", b.state, b.last_down)
            }
            Some(b) => format!("{} (peer not answering: BGP runs without BFD)", b.state),
        };
        rows.push(vec![
            name.clone(),
            peer.address.clone(),
            peer.bgp.clone(),
            bfd,
        ]);
    }
    rows
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{BackendKind, Format, load_str};

    fn config(services: &str) -> Config {
        let text = format!(
            "announcer: {{backend: exabgp, routes: [192.0.2.1/32]}}\nservices:\n{services}"
        );
        load_str(
            &text,
            Format::Yaml,
            Path::new("t.yaml"),
            Some(BackendKind::Exabgp),
        )
        .unwrap()
    }

    const A: &str = "  - name: a\n    check_interval: 1s\n    checks: [{kind: assigned_address, name: lo, spec: {ipv4: 127.0.0.1}}]\n";
    const B: &str = "  - name: b\n    check_interval: 1s\n    checks: [{kind: assigned_address, spec: {ipv4: 127.0.0.1}}]\n";

    fn outcome(passed: bool, reason: &str) -> Vec<CheckStatus> {
        vec![CheckStatus {
            name: "lo".into(),
            verdict: if passed { Verdict::Pass } else { Verdict::Fail },
            reason: reason.into(),
            duration_ms: Some(round_ms(Duration::from_micros(1500))),
            history: History::default(),
        }]
    }

    fn routes(list: &[&str]) -> BTreeSet<IpNet> {
        list.iter().map(|r| r.parse().unwrap()).collect()
    }

    #[test]
    fn starts_unknown_then_follows_rounds() {
        let board = StatusBoard::new();
        board.apply_config(&config(&format!("{A}{B}")));
        let report = board.report();
        assert_eq!(report.services.len(), 2);
        assert_eq!(report.services[0].state, State::Unknown);
        assert_eq!(report.services[0].checks[0].verdict, Verdict::Unknown);
        assert_eq!(report.services[1].checks[0].name, "assigned_address");
        assert!(!report.all_up());

        board.record_round("a", outcome(false, "gone"), State::Down);
        board.set_desired(Arc::new(crate::route::plain_routes(routes(&[
            "192.0.2.1/32",
        ]))));
        board.set_announced(&[("exabgp".to_string(), routes(&["192.0.2.1/32"]))].into());
        let report = board.report();
        let a = &report.services[0];
        assert_eq!((a.state, a.rounds), (State::Down, 1));
        assert_eq!(a.checks[0].verdict, Verdict::Fail);
        assert_eq!(a.checks[0].reason, "gone");
        assert_eq!(a.checks[0].duration_ms, Some(1.5));
        assert_eq!(report.routes.announced["exabgp"], routes(&["192.0.2.1/32"]));
    }

    #[test]
    fn reload_keeps_state_of_services_that_stay() {
        let board = StatusBoard::new();
        board.apply_config(&config(&format!("{A}{B}")));
        board.record_round("a", outcome(true, ""), State::Up);
        board.apply_config(&config(A));
        let report = board.report();
        assert_eq!(report.services.len(), 1);
        assert_eq!(report.services[0].state, State::Up);
        assert_eq!(report.services[0].checks[0].verdict, Verdict::Pass);
        // a report for a service no longer configured is dropped
        board.record_round("b", outcome(true, ""), State::Up);
        assert_eq!(board.report().services.len(), 1);
    }

    /// The page's inputs: since when (set by a transition, kept by a
    /// reload), a history per check that survives new rounds and reloads,
    /// and the change log, newest first and bounded.
    #[test]
    fn transitions_histories_and_the_change_log() {
        let board = StatusBoard::new();
        board.apply_config(&config(A));
        let configured_at = board.report().services[0]
            .since_ms
            .expect("since configured");
        for i in 0..3 {
            board.record_round("a", outcome(i != 1, "boom"), State::Up);
        }
        board.transition("a", State::Unknown, State::Up, "");
        let long = "x".repeat(1000);
        for _ in 0..CHANGES_KEPT + 5 {
            board.transition("a", State::Up, State::Down, &long);
        }
        board.transition("a", State::Down, State::Up, "recovered");
        let report = board.report();
        let a = &report.services[0];
        assert_eq!(a.state, State::Up);
        assert!(a.since_ms.unwrap() >= configured_at);
        let rounds: Vec<bool> = a.checks[0].history.rounds().map(|(p, _)| p).collect();
        assert_eq!(rounds, [true, false, true]);
        assert_eq!(a.checks[0].history.rounds().next().unwrap().1, 1500);
        assert_eq!(report.changes.len(), CHANGES_KEPT);
        assert_eq!(report.changes[0].reason, "recovered", "newest first");
        assert_eq!(
            (report.changes[0].from, report.changes[0].to),
            (State::Down, State::Up)
        );
        assert_eq!(
            report.changes[1].reason.chars().count(),
            CHANGE_REASON_MAX + 1
        );
        assert!(report.changes[1].reason.ends_with('…'));
        // A reload keeps since, the history and the log.
        board.apply_config(&config(&format!("{A}{B}")));
        let report = board.report();
        assert_eq!(report.services[0].since_ms, a.since_ms);
        assert_eq!(report.services[0].checks[0].history.len(), 3);
        assert_eq!(report.changes.len(), CHANGES_KEPT);
        assert!(report.services[1].checks[0].history.is_empty());
    }

    #[test]
    fn the_page_is_rendered_at_most_once_a_second() {
        let board = StatusBoard::new();
        board.apply_config(&config(A));
        let first = board.page();
        board.record_round("a", outcome(false, "boom"), State::Down);
        let again = board.page();
        assert!(Arc::ptr_eq(&first, &again), "served from the cache");
        assert!(!again.contains("boom"));
        // Once it is older than PAGE_MAX_AGE, the next request renders.
        *board.1.0.lock().unwrap() = Some((Instant::now() - PAGE_MAX_AGE, first));
        assert!(board.page().contains("boom"));
    }

    #[test]
    fn json_round_trips_with_lowercase_states() {
        let board = StatusBoard::new();
        board.apply_config(&config(A));
        board.record_round("a", outcome(true, ""), State::Up);
        let json = board.to_json();
        assert!(json.contains("\"state\": \"up\""), "{json}");
        assert!(json.contains("\"verdict\": \"pass\""), "{json}");
        let parsed: StatusReport = serde_json::from_str(&json).unwrap();
        // Everything but the check histories, which only the page shows.
        let mut report = board.report();
        assert_eq!(report.services[0].checks[0].history.len(), 1);
        report.services[0].checks[0].history = History::default();
        assert_eq!(parsed, report);
        assert!(parsed.all_up());
    }

    #[test]
    fn urls_split_and_unspecified_addresses_mean_loopback() {
        assert_eq!(
            split_url("http://127.0.0.1:9180"),
            Some(("127.0.0.1:9180".into(), "/status".into()))
        );
        assert_eq!(
            split_url("http://[::1]:9180/x/status"),
            Some(("[::1]:9180".into(), "/x/status".into()))
        );
        assert_eq!(split_url("https://a:1/"), None);
        assert_eq!(split_url("http://localhost/"), None);
        assert_eq!(
            url_for("0.0.0.0:9180".parse().unwrap()),
            "http://127.0.0.1:9180/status"
        );
        assert_eq!(
            url_for("[::]:9180".parse().unwrap()),
            "http://[::1]:9180/status"
        );
    }

    #[test]
    fn responses_other_than_200_json_are_explained() {
        let err = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nnope").unwrap_err();
        assert!(err.contains("404 Not Found"), "{err}");
        let err = parse_response(b"SSH-2.0-OpenSSH").unwrap_err();
        assert!(err.contains("not an HTTP response"), "{err}");
        let err = parse_response(b"HTTP/1.1 200 OK\r\n\r\n{}").unwrap_err();
        assert!(err.contains("not a status document"), "{err}");
    }

    #[test]
    fn renders_services_then_routes() {
        let board = StatusBoard::new();
        board.apply_config(&config(A));
        board.record_round(
            "a",
            outcome(false, "192.0.2.9 is not assigned"),
            State::Down,
        );
        board.set_announced(&[("exabgp".to_string(), routes(&["192.0.2.1/32"]))].into());
        let text = render(&board.report());
        assert_eq!(
            text,
            "SERVICE  STATE  CHECK  VERDICT  DURATION  REASON\n\
             a        down   lo     fail     1.5ms     192.0.2.9 is not assigned\n\
             \n\
             ROUTE         DESIRED  ANNOUNCED\n\
             192.0.2.1/32  no       exabgp\n"
        );
        board.set_announced(&[("exabgp".to_string(), routes(&[]))].into());
        assert!(
            render(&board.report()).ends_with("192.0.2.1/32  no       -\n"),
            "configured routes are listed even when nobody announces them"
        );
    }
}
