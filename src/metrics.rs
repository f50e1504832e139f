//! Every metric anycastd exports, named in one place, and the HTTP listener
//! that serves them in Prometheus text format at `/metrics` (and the status
//! document, JSON, at `/status`; see [`crate::status`]).
//!
//! Names follow the Go anycastd where the meaning is the same
//! (`anycastd_up`, `anycastd_service_up`, `anycastd_check_duration_seconds`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::status::StatusBoard;

/// Who a check is, for the labels of the extra metrics it exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLabels {
    pub service: String,
    pub check: String,
}

/// `1` while the process runs; label `version`.
pub const UP: &str = "anycastd_up";
/// `1` when the service is up, `0` otherwise; label `service`.
pub const SERVICE_UP: &str = "anycastd_service_up";
/// `1` when the check passed in its last round; labels `service`, `check`.
pub const CHECK_UP: &str = "anycastd_check_up";
/// Duration of the last round of a check, all attempts included.
pub const CHECK_DURATION: &str = "anycastd_check_duration_seconds";
/// `1` for the service's current state, `0` for the others; labels
/// `service`, `state` (up, degraded, draining, drained, down, unknown).
pub const SERVICE_STATE: &str = "anycastd_service_state";
/// `1` while an operator drains the service (file, CLI or shutdown).
pub const SERVICE_DRAINED: &str = "anycastd_service_drained";
/// While Draining: when its routes are withdrawn, as a Unix timestamp.
pub const SERVICE_DRAIN_END: &str = "anycastd_service_drain_end_timestamp_seconds";
/// Service state transitions; labels `service`, `state`.
pub const SERVICE_TRANSITIONS: &str = "anycastd_service_transitions_total";
/// Faults talking to the backend; labels `backend`, `kind`.
pub const BACKEND_ERRORS: &str = "anycastd_backend_errors_total";
/// Route announcements and withdrawals sent; labels `backend`, `action`.
pub const BACKEND_UPDATES: &str = "anycastd_backend_route_updates_total";
/// Routes the backend currently announces; label `backend`.
pub const ROUTES_ANNOUNCED: &str = "anycastd_routes_announced";
/// Routes the engine wants announced.
pub const ROUTES_DESIRED: &str = "anycastd_routes_desired";
/// Time from the verdict that changed the desired routes to the backend
/// having handed the change on (ExaBGP line flushed); label `backend`.
pub const ROUTE_CHANGE_LATENCY: &str = "anycastd_route_change_latency_seconds";
/// bird: `configure` requests; label `result` (`ok` or `error`).
pub const BIRD_RECONFIGURES: &str = "anycastd_bird_reconfigures_total";
/// bird: how long BIRD took to answer `configure`.
pub const BIRD_RECONFIGURE_DURATION: &str = "anycastd_bird_reconfigure_duration_seconds";
/// bird: Unix time of the last accepted reconfigure.
pub const BIRD_LAST_SUCCESS: &str = "anycastd_bird_last_success_timestamp_seconds";
/// native: session state per peer, numbered as the original's
/// `anycastd_gobgp_peer_session_state` (1 idle … 6 established); labels
/// `peer`, `router_id`.
pub const BGP_SESSION_STATE: &str = "anycastd_bgp_session_state";
/// native: times a session left Established.
pub const BGP_FLAPS: &str = "anycastd_bgp_session_flaps_total";
/// native: messages by `direction` (sent/received) and `type`.
pub const BGP_MESSAGES: &str = "anycastd_bgp_messages_total";
/// native: prefixes announced to the peer.
pub const BGP_PREFIXES: &str = "anycastd_bgp_prefixes_announced";
/// native: seconds since the session was established.
pub const BGP_UPTIME: &str = "anycastd_bgp_session_uptime_seconds";
/// native, BFD: session state per peer (0 admin_down, 1 down, 2 init,
/// 3 up: RFC 5880's numbering); labels `peer`, `router_id`.
pub const BFD_STATE: &str = "anycastd_bfd_state";
/// native, BFD: state changes; labels `peer`, `router_id`, `state` (the new one).
pub const BFD_STATE_CHANGES: &str = "anycastd_bfd_state_changes_total";
/// native, BFD: the interval we send at, as negotiated (before jitter).
pub const BFD_TX_INTERVAL: &str = "anycastd_bfd_tx_interval_seconds";
/// native, BFD: how long the peer may stay silent, as negotiated.
pub const BFD_DETECTION_TIME: &str = "anycastd_bfd_detection_time_seconds";
/// native, BFD: received packets discarded; label `reason`.
pub const BFD_DROPPED: &str = "anycastd_bfd_packets_dropped_total";
/// native: times BFD took a BGP session down or kept it from coming up.
pub const BGP_HELD_BY_BFD: &str = "anycastd_bgp_held_by_bfd_total";
/// The metrics/status listener could not accept a connection (usually: out
/// of file descriptors).
pub const LISTENER_ACCEPT_ERRORS: &str = "anycastd_listener_accept_errors_total";
/// Config reloads; label `result` (`ok` or `error`).
pub const CONFIG_RELOADS: &str = "anycastd_config_reloads_total";
/// tls_certificate: seconds until the tested certificate's NotAfter, negative
/// once expired; labels `service`, `check` and `path` (local) or `host` (remote).
pub const CERTIFICATE_EXPIRES_IN: &str = "anycastd_certificate_expires_in_seconds";
/// ntpq: last clock offset in milliseconds; labels `service`, `check`, `host`.
pub const NTP_OFFSET_MS: &str = "anycastd_check_last_ntp_offset_ms";
/// ntpq: last round-trip time in milliseconds; labels `service`, `check`, `host`.
pub const NTP_RTT_MS: &str = "anycastd_check_last_ntp_rtt_ms";
/// ntpq: queries sent; labels `service`, `check`, `host`.
pub const NTP_PACKETS_SENT: &str = "anycastd_check_ntp_packets_sent_total";
/// icmp_ping: fastest reply of the last run, seconds; labels `service`, `check`, `host`.
pub const PING_MIN_RTT: &str = "anycastd_check_min_rtt_seconds";
/// icmp_ping: mean round-trip time of the last run, seconds.
pub const PING_AVG_RTT: &str = "anycastd_check_avg_rtt_seconds";
/// icmp_ping: slowest reply of the last run, seconds.
pub const PING_MAX_RTT: &str = "anycastd_check_max_rtt_seconds";
/// icmp_ping: population standard deviation of the last run's RTTs, seconds.
pub const PING_STD_DEV_RTT: &str = "anycastd_check_std_dev_rtt_seconds";
/// icmp_ping: share of the last run's echo requests left unanswered, percent.
pub const PING_LOSS: &str = "anycastd_check_loss_percent";
/// icmp_ping: echo requests sent.
pub const PING_SENT: &str = "anycastd_check_packets_sent_total";
/// icmp_ping: echo replies received (duplicates not included).
pub const PING_RECEIVED: &str = "anycastd_check_packets_received_total";
/// icmp_ping: duplicate echo replies received.
pub const PING_DUPLICATES: &str = "anycastd_check_packets_received_duplicates_total";

/// Installs the global recorder and describes every metric.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    describe();
    metrics::gauge!(UP, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(UP, "Application liveness status (always 1)");
    describe_gauge!(
        SERVICE_UP,
        "Service status from its checks: 1 up, 0 down or unknown"
    );
    describe_gauge!(CHECK_UP, "Last verdict of a check: 1 passed, 0 failed");
    describe_gauge!(
        CHECK_DURATION,
        "Duration of the check's last round in seconds"
    );
    describe_counter!(SERVICE_TRANSITIONS, "Service state changes, by new state");
    describe_gauge!(
        SERVICE_STATE,
        "1 for the service's current state (up, degraded, draining, drained, down, unknown)"
    );
    describe_gauge!(
        SERVICE_DRAINED,
        "1 while an operator drains the service (maintenance file, anycastd drain, shutdown)"
    );
    describe_gauge!(
        SERVICE_DRAIN_END,
        "While draining: when the service's routes are withdrawn (Unix time); 0 otherwise"
    );
    describe_counter!(
        BACKEND_ERRORS,
        "Errors reported by or while talking to the backend"
    );
    describe_counter!(
        BACKEND_UPDATES,
        "Route announcements and withdrawals sent to the backend"
    );
    describe_gauge!(ROUTES_ANNOUNCED, "Routes the backend currently announces");
    describe_gauge!(
        ROUTES_DESIRED,
        "Routes whose protecting services are all up"
    );
    describe_histogram!(
        ROUTE_CHANGE_LATENCY,
        "Seconds from a verdict changing the desired routes to the backend passing the change on"
    );
    describe_counter!(CONFIG_RELOADS, "Configuration reloads (SIGHUP), by result");
    describe_counter!(
        LISTENER_ACCEPT_ERRORS,
        "Connections the metrics listener failed to accept"
    );
    describe_gauge!(
        BGP_SESSION_STATE,
        "BGP session state: 1 idle, 2 connect, 3 active, 4 opensent, 5 openconfirm, 6 established"
    );
    describe_counter!(BGP_FLAPS, "Times the BGP session left Established");
    describe_counter!(BGP_MESSAGES, "BGP messages by direction and type");
    describe_gauge!(BGP_PREFIXES, "Prefixes announced to the BGP peer");
    describe_gauge!(BGP_UPTIME, "Seconds since the BGP session was established");
    describe_gauge!(
        BFD_STATE,
        "BFD session state per peer: 0 admin_down, 1 down, 2 init, 3 up"
    );
    describe_counter!(BFD_STATE_CHANGES, "BFD session state changes, by new state");
    describe_gauge!(
        BFD_TX_INTERVAL,
        "Interval BFD Control packets are sent at, as negotiated, before jitter"
    );
    describe_gauge!(
        BFD_DETECTION_TIME,
        "How long the BFD peer may stay silent before the session goes down"
    );
    describe_counter!(BFD_DROPPED, "Received BFD packets discarded, by reason");
    describe_counter!(
        BGP_HELD_BY_BFD,
        "Times BFD took the BGP session down or kept it from coming up"
    );
    describe_counter!(BIRD_RECONFIGURES, "BIRD reconfigure requests, by result");
    describe_histogram!(
        BIRD_RECONFIGURE_DURATION,
        "Seconds BIRD took to answer configure"
    );
    describe_gauge!(
        BIRD_LAST_SUCCESS,
        "Unix time of BIRD's last accepted reconfigure"
    );
    describe_gauge!(
        CERTIFICATE_EXPIRES_IN,
        "Seconds until the tested certificate expires (negative once expired)"
    );
    describe_gauge!(
        NTP_OFFSET_MS,
        "Estimated offset of the local clock to the NTP server, ms"
    );
    describe_gauge!(NTP_RTT_MS, "Round-trip time of the last NTP query, ms");
    describe_counter!(NTP_PACKETS_SENT, "NTP queries sent");
    describe_gauge!(
        PING_MIN_RTT,
        "Fastest echo reply of the last ping run, seconds"
    );
    describe_gauge!(
        PING_AVG_RTT,
        "Mean round-trip time of the last ping run, seconds"
    );
    describe_gauge!(
        PING_MAX_RTT,
        "Slowest echo reply of the last ping run, seconds"
    );
    describe_gauge!(
        PING_STD_DEV_RTT,
        "Standard deviation of the last ping run's round-trip times, seconds"
    );
    describe_gauge!(
        PING_LOSS,
        "Echo requests of the last ping run that got no reply, percent"
    );
    describe_counter!(PING_SENT, "ICMP echo requests sent");
    describe_counter!(PING_RECEIVED, "ICMP echo replies received");
    describe_counter!(PING_DUPLICATES, "Duplicate ICMP echo replies received");
}

pub fn service_up(service: &str, up: bool) {
    metrics::gauge!(SERVICE_UP, "service" => service.to_string()).set(f64::from(u8::from(up)));
}

/// Moves the one-hot state gauge of `service` from `previous` to `state`
/// (series exist only for states the service has been in).
pub fn service_state(service: &str, previous: Option<&'static str>, state: &'static str) {
    if let Some(previous) = previous {
        metrics::gauge!(SERVICE_STATE, "service" => service.to_string(), "state" => previous)
            .set(0.0);
    }
    metrics::gauge!(SERVICE_STATE, "service" => service.to_string(), "state" => state).set(1.0);
}

/// Whether `service` is drained, and when its drain ends (if Draining).
pub fn service_drain(service: &str, drained: bool, ends: Option<std::time::SystemTime>) {
    metrics::gauge!(SERVICE_DRAINED, "service" => service.to_string())
        .set(f64::from(u8::from(drained)));
    let at = ends
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!(SERVICE_DRAIN_END, "service" => service.to_string()).set(at);
}

pub fn service_transition(service: &str, state: &'static str) {
    metrics::counter!(SERVICE_TRANSITIONS, "service" => service.to_string(), "state" => state)
        .increment(1);
}

/// A check's two per-round gauges, looked up in the registry once (at the
/// first round, when the recorder is installed) instead of every round:
/// 1,000 checks a second otherwise cost 2,000 lookups with their labels.
#[derive(Debug, Default)]
pub struct CheckGauges(std::sync::OnceLock<(metrics::Gauge, metrics::Gauge)>);

impl CheckGauges {
    pub fn record(&self, service: &str, check: &str, passed: bool, seconds: f64) {
        let (up, duration) = self.0.get_or_init(|| {
            let labels = [
                ("service", service.to_string()),
                ("check", check.to_string()),
            ];
            (
                metrics::gauge!(CHECK_UP, &labels),
                metrics::gauge!(CHECK_DURATION, &labels),
            )
        });
        up.set(f64::from(u8::from(passed)));
        duration.set(seconds);
    }
}

pub fn check_result(service: &str, check: &str, passed: bool, seconds: f64) {
    let labels = [
        ("service", service.to_string()),
        ("check", check.to_string()),
    ];
    metrics::gauge!(CHECK_UP, &labels).set(f64::from(u8::from(passed)));
    metrics::gauge!(CHECK_DURATION, &labels).set(seconds);
}

pub fn backend_error(backend: &'static str, kind: &'static str) {
    metrics::counter!(BACKEND_ERRORS, "backend" => backend, "kind" => kind).increment(1);
}

pub fn backend_updates(backend: &'static str, action: &'static str, count: usize) {
    metrics::counter!(BACKEND_UPDATES, "backend" => backend, "action" => action)
        .increment(count as u64);
}

pub fn routes_announced(backend: &'static str, count: usize) {
    metrics::gauge!(ROUTES_ANNOUNCED, "backend" => backend).set(count as f64);
}

pub fn routes_desired(count: usize) {
    metrics::gauge!(ROUTES_DESIRED).set(count as f64);
}

pub fn route_change_latency(backend: &'static str, seconds: f64) {
    metrics::histogram!(ROUTE_CHANGE_LATENCY, "backend" => backend).record(seconds);
}

/// Makes the error counter visible at zero before any error happens.
pub fn backend_errors_zero(backend: &'static str, kinds: &[&'static str]) {
    for kind in kinds {
        metrics::counter!(BACKEND_ERRORS, "backend" => backend, "kind" => *kind).absolute(0);
    }
}

pub fn bird_reconfigure(ok: bool, seconds: f64) {
    metrics::counter!(BIRD_RECONFIGURES, "result" => if ok { "ok" } else { "error" }).increment(1);
    metrics::histogram!(BIRD_RECONFIGURE_DURATION).record(seconds);
    if ok {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        metrics::gauge!(BIRD_LAST_SUCCESS).set(now);
    }
}

fn peer_labels(peer: &str, router_id: &str) -> [(&'static str, String); 2] {
    [
        ("peer", peer.to_string()),
        ("router_id", router_id.to_string()),
    ]
}

pub fn bgp_session_state(peer: &str, router_id: &str, state: u8) {
    metrics::gauge!(BGP_SESSION_STATE, &peer_labels(peer, router_id)).set(f64::from(state));
    if state != 6 {
        metrics::gauge!(BGP_UPTIME, &peer_labels(peer, router_id)).set(0.0);
    }
}

pub fn bfd_state(peer: &str, router_id: &str, state: u8, name: &'static str, changed: bool) {
    let labels = peer_labels(peer, router_id);
    metrics::gauge!(BFD_STATE, &labels).set(f64::from(state));
    if changed {
        let [p, r] = labels;
        metrics::counter!(BFD_STATE_CHANGES, &[p, r, ("state", name.to_string())]).increment(1);
    }
}

pub fn bfd_intervals(peer: &str, router_id: &str, tx: Option<f64>, detection: Option<f64>) {
    let labels = peer_labels(peer, router_id);
    metrics::gauge!(BFD_TX_INTERVAL, &labels).set(tx.unwrap_or(0.0));
    metrics::gauge!(BFD_DETECTION_TIME, &labels).set(detection.unwrap_or(0.0));
}

pub type BfdDropCounter = metrics::Counter;

/// The drop counter for `reason`, to keep and increment per packet.
pub fn bfd_drop_counter(reason: &'static str) -> BfdDropCounter {
    metrics::counter!(BFD_DROPPED, "reason" => reason)
}

pub fn bgp_held_by_bfd(peer: &str, router_id: &str) {
    metrics::counter!(BGP_HELD_BY_BFD, &peer_labels(peer, router_id)).increment(1);
}

pub fn bgp_flap(peer: &str, router_id: &str) {
    metrics::counter!(BGP_FLAPS, &peer_labels(peer, router_id)).increment(1);
}

pub fn bgp_message(peer: &str, router_id: &str, direction: &'static str, kind: &'static str) {
    let [p, r] = peer_labels(peer, router_id);
    let labels = [
        p,
        r,
        ("direction", direction.to_string()),
        ("type", kind.to_string()),
    ];
    metrics::counter!(BGP_MESSAGES, &labels).increment(1);
}

pub fn bgp_prefixes(peer: &str, router_id: &str, count: usize) {
    metrics::gauge!(BGP_PREFIXES, &peer_labels(peer, router_id)).set(count as f64);
}

pub fn bgp_uptime(peer: &str, router_id: &str, seconds: f64) {
    metrics::gauge!(BGP_UPTIME, &peer_labels(peer, router_id)).set(seconds);
}

pub fn config_reload(ok: bool) {
    metrics::counter!(CONFIG_RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// `source` is `"path"` for a local file or `"host"` for a remote server.
pub fn certificate_expires_in(
    labels: &CheckLabels,
    source: &'static str,
    value: &str,
    seconds: f64,
) {
    let labels = [
        ("service", labels.service.clone()),
        ("check", labels.check.clone()),
        (source, value.to_string()),
    ];
    metrics::gauge!(CERTIFICATE_EXPIRES_IN, &labels).set(seconds);
}

fn check_host_labels(labels: &CheckLabels, host: &str) -> [(&'static str, String); 3] {
    [
        ("service", labels.service.clone()),
        ("check", labels.check.clone()),
        ("host", host.to_string()),
    ]
}

pub fn ntp_packet_sent(labels: &CheckLabels, host: &str) {
    metrics::counter!(NTP_PACKETS_SENT, &check_host_labels(labels, host)).increment(1);
}

pub fn ntp_reply(labels: &CheckLabels, host: &str, offset_ms: f64, rtt_ms: f64) {
    let labels = check_host_labels(labels, host);
    metrics::gauge!(NTP_OFFSET_MS, &labels).set(offset_ms);
    metrics::gauge!(NTP_RTT_MS, &labels).set(rtt_ms);
}

/// What one icmp_ping run exports.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PingStats {
    pub sent: u64,
    pub received: u64,
    pub duplicates: u64,
    pub min_rtt_seconds: f64,
    pub avg_rtt_seconds: f64,
    pub max_rtt_seconds: f64,
    pub std_dev_rtt_seconds: f64,
    pub loss_percent: f64,
}

pub fn ping_run(labels: &CheckLabels, host: &str, stats: &PingStats) {
    let labels = check_host_labels(labels, host);
    metrics::gauge!(PING_MIN_RTT, &labels).set(stats.min_rtt_seconds);
    metrics::gauge!(PING_AVG_RTT, &labels).set(stats.avg_rtt_seconds);
    metrics::gauge!(PING_MAX_RTT, &labels).set(stats.max_rtt_seconds);
    metrics::gauge!(PING_STD_DEV_RTT, &labels).set(stats.std_dev_rtt_seconds);
    metrics::gauge!(PING_LOSS, &labels).set(stats.loss_percent);
    metrics::counter!(PING_SENT, &labels).increment(stats.sent);
    metrics::counter!(PING_RECEIVED, &labels).increment(stats.received);
    metrics::counter!(PING_DUPLICATES, &labels).increment(stats.duplicates);
}

/// Binds the metrics listener; done before the daemon starts so a busy port
/// is a startup error, not a silent absence of metrics.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Connections the listener serves at once. A scrape or a `status` call
/// takes one for milliseconds; idle ones past this are closed, oldest first.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a connection may live, whatever the client does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(15);

/// Serves `/metrics` and `/status` until `shutdown` is cancelled.
///
/// Nothing a client does may take resources from the checks and backends:
/// at most [`MAX_CONNECTIONS`] are open (a new one closes the oldest, so
/// idle connections cannot lock scrapes out and the process never runs out
/// of file descriptors because of us), one request per connection (no
/// keep-alive), headers within [`HEADER_TIMEOUT`], and every connection
/// closed after [`CONNECTION_LIFETIME`].
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    status: StatusBoard,
    shutdown: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    let mut open: VecDeque<tokio::task::AbortHandle> = VecDeque::new();
    let mut accept_failing = false;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends repeat until something else frees a
                // descriptor: log the fault once, not every retry.
                metrics::counter!(LISTENER_ACCEPT_ERRORS).increment(1);
                if !accept_failing {
                    accept_failing = true;
                    tracing::warn!(error = %e, "metrics listener: accept failed; retrying every 100ms");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if accept_failing {
            accept_failing = false;
            tracing::info!("metrics listener: accepting again");
        }
        while connections.try_join_next().is_some() {}
        open.retain(|c| !c.is_finished());
        while open.len() >= MAX_CONNECTIONS {
            if let Some(oldest) = open.pop_front() {
                oldest.abort();
            }
        }
        let (handle, status) = (handle.clone(), status.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let (handle, status) = (handle.clone(), status.clone());
            async move { Ok::<_, Infallible>(respond(&request, &handle, &status)) }
        });
        open.push_back(connections.spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(io, service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        }));
    }
    connections.shutdown().await;
}

fn respond(
    request: &Request<Incoming>,
    handle: &PrometheusHandle,
    board: &StatusBoard,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render(),
        ),
        (&hyper::Method::GET, "/status") => {
            reply(StatusCode::OK, "application/json", board.to_json())
        }
        (&hyper::Method::GET, "/") => {
            let page = board.page();
            let mut page = reply(StatusCode::OK, "text/html; charset=utf-8", (*page).clone());
            // Belt and braces over the escaping: the page runs no script,
            // loads nothing and is never cached stale.
            let headers = page.headers_mut();
            headers.insert(
                "content-security-policy",
                hyper::header::HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'",
                ),
            );
            headers.insert(
                "x-content-type-options",
                hyper::header::HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                "cache-control",
                hyper::header::HeaderValue::from_static("no-store"),
            );
            page
        }
        (_, "/" | "/metrics" | "/status") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try / (the status page), /metrics or /status\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn get(address: SocketAddr, path: &str) -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    }

    async fn start() -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_addr().unwrap();
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            handle,
            StatusBoard::new(),
            shutdown.clone(),
        ));
        (address, shutdown, server)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_cannot_lock_out_a_scrape() {
        let (address, shutdown, server) = start().await;
        let reply = tokio::task::spawn_blocking(move || {
            // Four times the cap, each connected and silent.
            let idle: Vec<std::net::TcpStream> = (0..4 * MAX_CONNECTIONS)
                .map(|_| std::net::TcpStream::connect(address).unwrap())
                .collect();
            let reply = get(address, "/status");
            // The oldest idle ones were closed to make room.
            let mut first = &idle[0];
            first
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let closed = matches!(first.read(&mut [0u8; 1]), Ok(0) | Err(_));
            (reply, closed)
        })
        .await
        .unwrap();
        let (reply, oldest_closed) = reply;
        let reply = reply.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("\"services\""), "{reply}");
        assert!(oldest_closed);
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_never_sends_headers_is_closed() {
        let (address, shutdown, server) = start().await;
        let waited = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            stream.set_read_timeout(Some(HEADER_TIMEOUT * 3)).unwrap();
            let started = std::time::Instant::now();
            let mut reply = Vec::new();
            let _ = stream.read_to_end(&mut reply);
            started.elapsed()
        })
        .await
        .unwrap();
        assert!(waited < HEADER_TIMEOUT * 2, "{waited:?}");
        shutdown.cancel();
        server.await.unwrap();
    }
}
