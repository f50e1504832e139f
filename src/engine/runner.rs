//! Running checks: attempts with their timeout, the pause between failed
//! attempts, and a service's round of checks combined by its strategy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use futures_util::future::join_all;

use super::health::{CheckVerdict, Level, round_verdict};
use crate::checks::{self, AttemptPolicy, BuildError, Check};
use crate::config::{ServiceConfig, format_duration};

/// A check ready to run, with the policy the engine applies to it.
pub struct PreparedCheck {
    pub name: String,
    pub group: String,
    /// A failure degrades the service instead of failing it.
    pub degrades: bool,
    pub policy: AttemptPolicy,
    pub check: Box<dyn Check>,
    /// Its `anycastd_check_*` gauges.
    pub gauges: crate::metrics::CheckGauges,
}

/// A service whose checks have all been built. Cheap to clone: a
/// restarted service task shares the checks of the one it replaces.
#[derive(Clone)]
pub struct PreparedService {
    pub config: Arc<ServiceConfig>,
    pub checks: Arc<[PreparedCheck]>,
}

/// A check that could not be built, with where it sits in the config.
#[derive(Debug, thiserror::Error)]
#[error("services[{service}].checks[{check}] ({name}): {error}")]
pub struct PrepareError {
    pub service: usize,
    pub check: usize,
    pub name: String,
    pub error: BuildError,
}

/// Builds every check of every service; all problems are reported.
pub fn prepare(services: &[ServiceConfig]) -> Result<Vec<PreparedService>, Vec<PrepareError>> {
    let mut prepared = Vec::new();
    let mut errors = Vec::new();
    for (service_index, service) in services.iter().enumerate() {
        let mut checks = Vec::new();
        for (check_index, check) in service.checks.iter().enumerate() {
            match checks::build(check, &service.name) {
                Ok(built) => checks.push(PreparedCheck {
                    name: check.name.clone(),
                    group: check.group.clone(),
                    degrades: check.degrades,
                    policy: AttemptPolicy::for_spec(&check.spec),
                    check: built,
                    gauges: Default::default(),
                }),
                Err(error) => errors.push(PrepareError {
                    service: service_index,
                    check: check_index,
                    name: check.name.clone(),
                    error,
                }),
            }
        }
        prepared.push(PreparedService {
            config: Arc::new(service.clone()),
            checks: checks.into(),
        });
    }
    if errors.is_empty() {
        Ok(prepared)
    } else {
        Err(errors)
    }
}

/// One check's result in a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub name: String,
    pub group: String,
    pub passed: bool,
    /// Why it failed; empty when it passed.
    pub reason: String,
    pub duration: Duration,
}

/// A service's round: every check's outcome and the strategy's verdict.
#[derive(Debug, Clone)]
pub struct RoundOutcome {
    /// Not Failing: the service serves (Up or Degraded).
    pub passed: bool,
    pub level: Level,
    pub checks: Vec<CheckOutcome>,
    /// When the verdict was known.
    pub finished_at: Instant,
}

impl RoundOutcome {
    /// The failing checks' reasons in one line, for logs.
    pub fn failure_summary(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs one check under its policy: up to `tries` attempts, each bounded by
/// `timeout`, `interval` apart. The first pass ends it.
pub async fn run_check(check: &PreparedCheck) -> CheckOutcome {
    // tokio's clock, so tests with a paused clock see the pauses.
    let started = tokio::time::Instant::now();
    let policy = check.policy;
    let tries = policy.tries.max(1);
    let mut last_error = String::new();
    let mut passed = false;
    for attempt in 1..=tries {
        // A check that panics is a failed attempt, never a dead service.
        let guarded = AssertUnwindSafe(check.check.attempt()).catch_unwind();
        match tokio::time::timeout(policy.timeout, guarded).await {
            Ok(Ok(Ok(()))) => {
                passed = true;
                break;
            }
            Ok(Ok(Err(reason))) => last_error = reason,
            Ok(Err(panic)) => last_error = format!("check panicked: {}", panic_message(&*panic)),
            Err(_) => {
                last_error = format!("timed out after {}", format_duration(policy.timeout));
            }
        }
        if attempt < tries {
            tokio::time::sleep(policy.interval).await;
        }
    }
    let reason = match (passed, tries) {
        (true, _) => String::new(),
        (false, 1) => last_error,
        (false, n) => format!(
            "{n} tries {} apart failed, last: {last_error}",
            format_duration(policy.interval)
        ),
    };
    CheckOutcome {
        name: check.name.clone(),
        group: check.group.clone(),
        passed,
        reason,
        duration: started.elapsed(),
    }
}

/// The text a panic was raised with, if it was a string.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Runs all of a service's checks concurrently and applies its strategy.
pub async fn run_round(service: &PreparedService) -> RoundOutcome {
    let checks = join_all(service.checks.iter().map(run_check)).await;
    let verdicts: Vec<CheckVerdict<'_>> = checks
        .iter()
        .zip(service.checks.iter())
        .map(|(c, prepared)| CheckVerdict {
            group: &c.group,
            passed: c.passed,
            degrades: prepared.degrades,
        })
        .collect();
    let level = round_verdict(service.config.strategy, &verdicts);
    RoundOutcome {
        passed: level != Level::Failing,
        level,
        checks,
        finished_at: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::checks::AttemptFuture;

    /// Fails `failures` times, then passes; or hangs forever when `hang`;
    /// or panics on its first attempt when `panic`.
    struct Scripted {
        failures: u32,
        hang: bool,
        panic: bool,
        calls: AtomicU32,
    }

    impl Check for Scripted {
        fn attempt(&self) -> AttemptFuture<'_> {
            Box::pin(async move {
                let call = self.calls.fetch_add(1, Ordering::SeqCst);
                if self.hang {
                    std::future::pending::<()>().await;
                }
                if self.panic && call == 0 {
                    panic!("index out of bounds: the len is 0 but the index is {call}");
                }
                if call < self.failures {
                    Err(format!("failure {call}"))
                } else {
                    Ok(())
                }
            })
        }
    }

    fn prepared(failures: u32, hang: bool, tries: u8) -> PreparedCheck {
        PreparedCheck {
            name: "scripted".into(),
            group: String::new(),
            degrades: false,
            gauges: Default::default(),
            policy: AttemptPolicy {
                tries,
                interval: Duration::from_millis(100),
                timeout: Duration::from_secs(1),
            },
            check: Box::new(Scripted {
                failures,
                hang,
                panic: false,
                calls: AtomicU32::new(0),
            }),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn passes_on_a_later_try_after_interval_pauses() {
        let check = prepared(2, false, 3);
        let outcome = run_check(&check).await;
        assert!(outcome.passed);
        // two pauses of 100 ms, none after the passing try
        assert_eq!(outcome.duration, Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn no_pause_after_the_last_failed_try() {
        let check = prepared(5, false, 3);
        let outcome = run_check(&check).await;
        assert!(!outcome.passed);
        assert_eq!(outcome.duration, Duration::from_millis(200));
        assert_eq!(
            outcome.reason,
            "3 tries 100ms apart failed, last: failure 2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_attempt_is_a_failed_attempt() {
        let mut check = prepared(0, false, 1);
        check.check = Box::new(Scripted {
            failures: 0,
            hang: false,
            panic: true,
            calls: AtomicU32::new(0),
        });
        let outcome = run_check(&check).await;
        assert!(!outcome.passed);
        assert_eq!(
            outcome.reason,
            "check panicked: index out of bounds: the len is 0 but the index is 0"
        );
        // The next try runs normally: the check is still usable.
        check.policy.tries = 2;
        assert!(run_check(&check).await.passed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_attempt_fails_at_its_timeout() {
        let check = prepared(0, true, 1);
        let outcome = run_check(&check).await;
        assert!(!outcome.passed);
        assert_eq!(outcome.reason, "timed out after 1s");
        assert_eq!(outcome.duration, Duration::from_secs(1));
    }
}
