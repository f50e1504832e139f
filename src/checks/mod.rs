//! Health checks: one module per kind, each a single *attempt* that passes or
//! fails with a one-line reason.
//!
//! Checks know nothing of routes, services or time policy: the engine decides
//! how many attempts to make, how long each may take and how long to wait
//! between them (see [`AttemptPolicy`]). A check never panics; a hung attempt
//! is simply dropped by the engine when its timeout passes.

mod assigned_address;
mod dns;
mod file;
pub mod grpc;
mod http;
mod icmp;
mod listening;
mod ntp;
mod tcp;
mod tftp;
mod tls;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{CheckConfig, CheckSpec};

pub use crate::metrics::CheckLabels;
pub use assigned_address::AssignedAddress;
pub use dns::{RCODE_NAMES, rcode_from_name};
pub use file::FILE_READ_MAX_BYTES;
pub use http::Http2xx;
pub use tcp::TCP_EXPECT_MAX_BYTES;

/// The outcome of one attempt: `Err` carries why it failed, in one line.
pub type AttemptResult = Result<(), String>;

/// A boxed attempt future; checks are stored as trait objects.
pub type AttemptFuture<'a> = Pin<Box<dyn Future<Output = AttemptResult> + Send + 'a>>;

/// One health check, ready to run.
pub trait Check: Send + Sync {
    /// Makes one attempt. Cancel-safe: the engine drops it on timeout.
    fn attempt(&self) -> AttemptFuture<'_>;

    /// Notified when this check's verdict may have changed (a kernel event),
    /// so the engine runs the service's round at once instead of at the next
    /// tick. `None` (the default): only the interval runs rounds. Periodic
    /// rounds go on either way, as the backstop.
    fn wakeups(&self) -> Option<Arc<Notify>> {
        None
    }
}

/// How the engine runs a check's attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptPolicy {
    /// Attempts at most; the first pass ends the round.
    pub tries: u8,
    /// Pause between a failed attempt and the next (not after the last).
    pub interval: Duration,
    /// Limit for each attempt.
    pub timeout: Duration,
}

/// Checks with no timeout of their own still get one, so none can hang.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `file` check's limit: a stat and a 64 KiB read, unless the file sits on
/// a hung mount.
const FILE_TIMEOUT: Duration = Duration::from_secs(5);

impl AttemptPolicy {
    /// The longest a round of this check can take: every try timing out,
    /// with the pauses between them.
    pub fn worst_case(&self) -> Duration {
        let tries = u32::from(self.tries.max(1));
        self.timeout
            .saturating_mul(tries)
            .saturating_add(self.interval.saturating_mul(tries - 1))
    }

    pub fn for_spec(spec: &CheckSpec) -> AttemptPolicy {
        let policy = |tries: u8, interval: Duration, timeout: Duration| AttemptPolicy {
            tries,
            interval,
            timeout,
        };
        match spec {
            CheckSpec::AssignedAddress(_) => policy(1, Duration::ZERO, DEFAULT_TIMEOUT),
            CheckSpec::Listening(_) => policy(1, Duration::ZERO, DEFAULT_TIMEOUT),
            CheckSpec::DnsLookup(s) => policy(s.tries, s.interval.get(), s.timeout.get()),
            CheckSpec::Http2xx(s) => policy(s.tries, s.interval.get(), s.timeout.get()),
            // `tries` is the number of echo requests in one run, not retries.
            CheckSpec::IcmpPing(s) => policy(1, Duration::ZERO, s.timeout.get()),
            CheckSpec::TftpRrq(s) => policy(s.tries, s.interval.get(), s.timeout.get()),
            CheckSpec::Ntpq(s) => policy(s.tries, s.interval.get(), s.timeout.get()),
            CheckSpec::GrpcHealth(s) => policy(s.tries, s.interval.get(), s.timeout.get()),
            CheckSpec::TlsCertificate(s) => policy(
                1,
                Duration::ZERO,
                s.timeout.map(|t| t.get()).unwrap_or(DEFAULT_TIMEOUT),
            ),
            CheckSpec::TcpConnect(s) => policy(s.tries, s.interval.get(), s.timeout.get()),
            // A local file: one look, bounded like every other check.
            CheckSpec::File(_) => policy(1, Duration::ZERO, FILE_TIMEOUT),
        }
    }
}

/// Why a configured check cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The kind is part of the config schema but this build cannot run it.
    #[error("check kind `{0}` is not implemented yet")]
    NotImplemented(&'static str),
    /// The spec has a value that only shows as wrong when the check is built.
    #[error("{0}")]
    Invalid(String),
}

/// Builds the runnable check for one configured check of `service`.
pub fn build(check: &CheckConfig, service: &str) -> Result<Box<dyn Check>, BuildError> {
    let labels = CheckLabels {
        service: service.to_string(),
        check: check.name.clone(),
    };
    Ok(match &check.spec {
        CheckSpec::AssignedAddress(spec) => Box::new(AssignedAddress::new(spec)),
        CheckSpec::Listening(spec) => Box::new(listening::Listening::new(spec)),
        CheckSpec::Http2xx(spec) => Box::new(Http2xx::new(spec)?),
        CheckSpec::DnsLookup(spec) => Box::new(dns::DnsLookup::new(spec)?),
        CheckSpec::TftpRrq(spec) => Box::new(tftp::TftpRrq::new(spec)?),
        CheckSpec::Ntpq(spec) => Box::new(ntp::Ntpq::new(spec, &labels)?),
        CheckSpec::IcmpPing(spec) => Box::new(icmp::IcmpPing::new(spec, &labels)?),
        CheckSpec::TlsCertificate(spec) => Box::new(tls::TlsCertificate::new(spec, &labels)?),
        CheckSpec::GrpcHealth(spec) => Box::new(grpc::GrpcHealth::new(spec)?),
        CheckSpec::TcpConnect(spec) => Box::new(tcp::TcpConnect::new(spec)),
        CheckSpec::File(spec) => Box::new(file::FileCheck::new(spec)),
    })
}

/// Resolves `host` (an IP literal or a name, through the system resolver)
/// to one socket address; `ipv4` picks the family when it matters.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    ipv4: Option<bool>,
) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addresses = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve \"{host}\": {e}"))?;
    addresses
        .find(|a| ipv4.is_none_or(|v4| a.is_ipv4() == v4))
        .ok_or_else(|| match ipv4 {
            None => format!("\"{host}\" has no address"),
            Some(v4) => format!(
                "\"{host}\" has no {} address",
                if v4 { "IPv4" } else { "IPv6" }
            ),
        })
}

/// Bounds a blocking receive on a netlink socket, so a listener thread can
/// look up now and then whether anyone still listens.
pub(crate) fn set_receive_timeout(
    socket: &impl std::os::fd::AsFd,
    timeout: Duration,
) -> std::io::Result<()> {
    socket2::SockRef::from(socket).set_read_timeout(Some(timeout))
}

/// Joins an error's source chain into one line ("a: b: c"), skipping
/// repeats, so a reason says what actually went wrong.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
