//! Backends: take the whole desired route set and make the outside world match
//! it. They are level-triggered — after a restart, reconnect or reload they
//! simply reconcile again — and never decide health.
//!
//! Each backend keeps its decisions (what to add, what to remove, what a reply
//! means) in a pure part and its I/O in a thin async loop.

pub mod bird;
pub mod exabgp;
pub mod lines;
pub mod native;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{BackendKind, Config};
use crate::route::{AnnouncedReporter, DesiredRoutes};

/// Why a backend stopped running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error(transparent)]
    Exabgp(#[from] exabgp::ExabgpError),
    /// The config lacks what the backend needs (config resolution should
    /// have caught it; kept so no backend has to panic).
    #[error("{0}")]
    Misconfigured(&'static str),
}

/// A running backend's future; resolves when it has withdrawn everything
/// after `shutdown`, or when it cannot go on.
pub type BackendFuture = Pin<Box<dyn Future<Output = Result<(), BackendError>> + Send>>;

/// The seam between the engine and the routing world.
pub trait Backend: Send {
    /// Short name used in logs and metric labels.
    fn name(&self) -> &'static str;

    /// The longest its goodbye (withdraw everything, make sure it arrived)
    /// may take once `shutdown` is cancelled. The daemon exits after this
    /// plus a second, whatever the other side does.
    fn shutdown_bound(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// Reconciles every value `desired` takes until `shutdown` is cancelled,
    /// then withdraws everything it announced and returns.
    fn run(
        self: Box<Self>,
        desired: watch::Receiver<DesiredRoutes>,
        shutdown: CancellationToken,
    ) -> BackendFuture;
}

/// Builds the backend the config selects; it reports what it announces
/// to `announced`.
pub fn build(
    config: &Config,
    announced: AnnouncedReporter,
    peers: crate::peers::PeerReporter,
) -> Result<Box<dyn Backend>, BackendError> {
    match config.backend {
        BackendKind::Exabgp => Ok(Box::new(
            exabgp::ExabgpBackend::stdio(config).reporting_to(announced),
        )),
        BackendKind::Bird => match &config.bird {
            Some(bird) => Ok(Box::new(
                bird::BirdBackend::new(bird.clone())
                    .with_local_asn(config.local_asn)
                    .reporting_to(announced),
            )),
            None => Err(BackendError::Misconfigured(
                "the bird backend needs announcer.bird",
            )),
        },
        BackendKind::Native => Ok(Box::new(
            native::NativeBackend::new(config)?
                .reporting_to(announced)
                .reporting_peers_to(peers),
        )),
    }
}

/// Capped exponential backoff for retries after a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before retrying.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
