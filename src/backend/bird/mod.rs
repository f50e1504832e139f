//! The `bird` backend: anycastd owns an include file (two for the static
//! format with IPv6) and has BIRD reconfigure whenever the healthy set
//! changes (a route's state or attributes included), rolling the file back
//! if BIRD refuses it. The static format writes each route's attributes in
//! its `route` line; the prefix_set format lists the Degraded and Draining
//! routes in sets of their own for the operator's filters ([`mod@render`]).
//!
//! ```text
//! desired routes ─► render (pure) ─► atomic write ─► `configure` over the
//!                                      ▲            control socket (or
//!                   restore previous ──┘ refused    reload_command)
//! ```
//!
//! What to apply and when, retries and fault logging are decided in
//! [`reconcile`] (no I/O): a change goes out at once, changes that come
//! while a `configure` is in flight go together in the next one, and a
//! fault is retried at least once a second; the daemon never exits over
//! it. Plain `configure` is used, never `configure soft`, which would not
//! re-run export filters on routes already exported.
//!
//! The files are replaced by rename, so BIRD reads the old or the new one,
//! never half of one. They are not fsynced: durability is not the goal.
//! After a crash or a power loss the right state is "nothing announced
//! until anycastd has decided", which neither the old nor the new file
//! gives; the documented paths are under `/run/anycastd/` (tmpfs), created
//! empty and valid at boot by the tmpfiles.d snippet.

pub mod control;
pub mod reconcile;
pub mod render;

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Backend, BackendFuture};
use crate::config::BirdConfig;
use crate::metrics;
use crate::route::{AnnouncedReporter, DesiredRoutes, RouteSet};
use control::ControlError;
use reconcile::{Outcome, Reconciler};
use render::{RenderedFile, render};

const NAME: &str = "bird";

/// Why the bird backend could not apply a route set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BirdError {
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("reload_command {command:?} failed: {message}")]
    ReloadCommand { command: String, message: String },
}

impl BirdError {
    /// Whether BIRD itself refused (then the previous files are restored).
    fn refused(&self) -> bool {
        matches!(
            self,
            BirdError::Control(ControlError::Refused { .. }) | BirdError::ReloadCommand { .. }
        )
    }

    fn metric_kind(&self) -> &'static str {
        match self {
            BirdError::Write { .. } => "write",
            BirdError::Control(ControlError::Refused { .. }) | BirdError::ReloadCommand { .. } => {
                "refused"
            }
            BirdError::Control(ControlError::Timeout(_)) => "timeout",
            BirdError::Control(_) => "unreachable",
        }
    }
}

pub struct BirdBackend {
    config: BirdConfig,
    /// The AS number `as_path_prepend` repeats (`announcer.local_asn`).
    local_asn: Option<u32>,
    reconciler: Reconciler,
    /// What each file holds, as last written (`None`: absent).
    on_disk: HashMap<PathBuf, Option<String>>,
    announced: AnnouncedReporter,
}

impl BirdBackend {
    pub fn new(config: BirdConfig) -> BirdBackend {
        BirdBackend {
            config,
            local_asn: None,
            reconciler: Reconciler::new(),
            on_disk: HashMap::new(),
            announced: AnnouncedReporter::default(),
        }
    }

    /// Prepends `local_asn` where a route's attributes ask for a prepend.
    pub fn with_local_asn(mut self, local_asn: Option<u32>) -> Self {
        self.local_asn = local_asn;
        self
    }

    /// Reports what BIRD accepted to `announced`.
    pub fn reporting_to(mut self, announced: AnnouncedReporter) -> Self {
        self.announced = announced;
        self
    }

    async fn run_loop(
        mut self,
        mut desired: watch::Receiver<DesiredRoutes>,
        shutdown: CancellationToken,
    ) -> Result<(), super::BackendError> {
        metrics::backend_errors_zero(NAME, &["write", "refused", "timeout", "unreachable"]);
        // At start the files are rewritten from our own state (empty until
        // the first verdicts), which corrects whatever a crash left behind.
        let mut current = desired.borrow_and_update().clone();
        let mut retry_at = self.converge(&current).await;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // Changes that came during the last apply are all in the
                // latest value: they go together.
                changed = desired.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    current = desired.borrow_and_update().clone();
                    retry_at = self.converge(&current).await;
                }
                _ = sleep_until(retry_at), if retry_at.is_some() => {
                    retry_at = self.converge(&current).await;
                }
            }
        }
        // Shutdown: withdraw everything; one attempt, then leave the empty
        // files for BIRD's next start if it is not reachable now.
        match self.apply(&RouteSet::new()).await {
            Ok(()) => tracing::info!("withdrew all routes from BIRD"),
            Err(e) => {
                tracing::error!(error = %e, "could not withdraw routes from BIRD at shutdown")
            }
        }
        Ok(())
    }

    /// Applies `desired` unless BIRD already has it; returns when to retry.
    async fn converge(&mut self, desired: &DesiredRoutes) -> Option<tokio::time::Instant> {
        // The whole set: a change of a route's state or attributes alone
        // rewrites the files too.
        let routes: &Arc<RouteSet> = &desired.routes;
        if !self.reconciler.needs_apply(routes) {
            return None;
        }
        let result = self.apply(routes).await;
        let outcome = match &result {
            Ok(()) => self.reconciler.applied(routes),
            Err(e) => self.reconciler.failed(e.to_string()),
        };
        match (outcome, result) {
            (Outcome::Accepted { recovered }, _) => {
                if let Some(at) = desired.changed_at {
                    metrics::route_change_latency(NAME, at.elapsed().as_secs_f64());
                }
                if recovered {
                    tracing::info!("BIRD accepted the routes again");
                }
                None
            }
            (
                Outcome::Failed {
                    retry_in,
                    new_fault,
                },
                result,
            ) => {
                let error = result.err().map(|e| e.to_string()).unwrap_or_default();
                if new_fault {
                    tracing::error!(error = %error, retry_in = ?retry_in, "BIRD update failed; retrying until it works");
                } else {
                    tracing::debug!(error = %error, retry_in = ?retry_in, "BIRD update failed again");
                }
                Some(tokio::time::Instant::now() + retry_in)
            }
        }
    }

    /// Writes the files for `routes` and has BIRD reconfigure; on refusal
    /// restores the previous files and reconfigures again.
    async fn apply(&mut self, routes: &RouteSet) -> Result<(), BirdError> {
        let files = render(&self.config, self.local_asn, routes);
        // What each file holds now: remembered from our last write, read
        // from disk only the first time. Unchanged files are not rewritten.
        let known = std::mem::take(&mut self.on_disk);
        // A write can still block on a slow disk: keep it off the runtime thread.
        let (changed, on_disk) = tokio::task::spawn_blocking(move || {
            let mut on_disk = known;
            // Each changed file and what it held before. Contents are moved,
            // never copied: at 10,000 routes a file is ~300 KB.
            let mut changed: Vec<(PathBuf, Option<String>)> = Vec::new();
            for RenderedFile { path, content } in files {
                let before = match on_disk.remove(&path) {
                    Some(known) => known,
                    None => std::fs::read_to_string(&path).ok(),
                };
                if before.as_deref() == Some(content.as_str()) {
                    on_disk.insert(path, before);
                    continue;
                }
                if let Err(e) = write_atomically(&path, &content) {
                    // Not renamed: it still holds what it held. And the
                    // files go to BIRD together or not at all: the IPv4 file
                    // must not wait, new, for a retry of the IPv6 one.
                    on_disk.insert(path, before);
                    put_back(&changed, &mut on_disk);
                    return (Err(e), on_disk);
                }
                on_disk.insert(path.clone(), Some(content));
                changed.push((path, before));
            }
            (Ok(changed), on_disk)
        })
        .await
        .map_err(|e| BirdError::Write {
            path: self.config.include_file.display().to_string(),
            error: std::io::Error::other(e),
        })?;
        self.on_disk = on_disk;
        let changed = changed.inspect_err(|_| metrics::backend_error(NAME, "write"))?;
        let started = Instant::now();
        let result = self.reconfigure().await;
        metrics::bird_reconfigure(result.is_ok(), started.elapsed().as_secs_f64());
        match result {
            Ok(message) => {
                tracing::debug!(routes = routes.len(), bird = %message, took = ?started.elapsed(), "BIRD reconfigured");
                metrics::routes_announced(NAME, routes.len());
                let prefixes: BTreeSet<IpNet> = routes.keys().copied().collect();
                self.announced.report(NAME, &prefixes);
                Ok(())
            }
            Err(e) => {
                metrics::backend_error(NAME, e.metric_kind());
                if e.refused() {
                    self.restore(&changed).await;
                }
                Err(e)
            }
        }
    }

    async fn restore(&mut self, previous: &[(PathBuf, Option<String>)]) {
        put_back(previous, &mut self.on_disk);
        if let Err(e) = self.reconfigure().await {
            tracing::debug!(error = %e, "reconfigure after restoring the previous file failed");
        }
    }

    async fn reconfigure(&self) -> Result<String, BirdError> {
        match &self.config.reload_command {
            None => Ok(
                control::configure(&self.config.socket, self.config.reconfigure_timeout).await?,
            ),
            Some(argv) => run_reload_command(argv, self.config.reconfigure_timeout).await,
        }
    }
}

/// Puts back what `previous` says each file held (`None`: absent), noting
/// in `on_disk` what the files hold now.
fn put_back(
    previous: &[(PathBuf, Option<String>)],
    on_disk: &mut HashMap<PathBuf, Option<String>>,
) {
    for (path, content) in previous.iter().rev() {
        let result = match content {
            Some(content) => write_atomically(path, content),
            None => std::fs::remove_file(path).map_err(|error| BirdError::Write {
                path: path.display().to_string(),
                error,
            }),
        };
        match result {
            Ok(()) => {
                on_disk.insert(path.clone(), content.clone());
            }
            Err(e) => {
                // Unknown now: read it again next time.
                on_disk.remove(path);
                tracing::error!(error = %e, "could not restore the previous BIRD include file");
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Temp file in the same directory, renamed over: BIRD reads either the old
/// or the new file, never half of one. No fsync (see the module docs).
pub fn write_atomically(path: &Path, content: &str) -> Result<(), BirdError> {
    use std::io::Write;
    let err = |error| BirdError::Write {
        path: path.display().to_string(),
        error,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.anycastd-{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temp).map_err(err)?;
    let written = file
        .write_all(content.as_bytes())
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(err(e));
    }
    Ok(())
}

async fn run_reload_command(argv: &[String], timeout: Duration) -> Result<String, BirdError> {
    let command = argv.join(" ");
    let failed = |message: String| BirdError::ReloadCommand {
        command: command.clone(),
        message,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| failed("empty command".into()))?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(timeout, child).await {
        Err(_) => return Err(failed(format!("no exit within {timeout:?}"))),
        Ok(Err(e)) => {
            return Err(BirdError::Control(ControlError::Unreachable {
                socket: command.clone(),
                reason: e.to_string(),
            }));
        }
        Ok(Ok(output)) => output,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .lines()
    .filter(|l| !l.trim().is_empty())
    .collect::<Vec<_>>()
    .join(" / ");
    if output.status.success() {
        Ok(text)
    } else {
        Err(failed(format!("{} ({})", text, output.status)))
    }
}

/// What `anycastd bird-flush` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flushed {
    /// Files emptied and BIRD reconfigured.
    Reconfigured,
    /// Files emptied; BIRD is not running, so it reads them when it starts.
    BirdNotRunning,
}

/// `anycastd bird-flush`: writes the empty set and reconfigures once, for
/// systemd's `ExecStartPre`/`ExecStopPost`. A BIRD that is not running is
/// not an error: it will read the empty files when it starts.
pub async fn flush(config: &BirdConfig) -> Result<Flushed, BirdError> {
    let mut backend = BirdBackend::new(config.clone());
    match backend.apply(&RouteSet::new()).await {
        Ok(()) => Ok(Flushed::Reconfigured),
        Err(BirdError::Control(ControlError::Unreachable { .. })) => Ok(Flushed::BirdNotRunning),
        Err(e) => Err(e),
    }
}

impl Backend for BirdBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    /// One `configure`; a rollback after a refusal is a second.
    fn shutdown_bound(&self) -> Duration {
        self.config.reconfigure_timeout.saturating_mul(2)
    }

    fn run(
        self: Box<Self>,
        desired: watch::Receiver<DesiredRoutes>,
        shutdown: CancellationToken,
    ) -> BackendFuture {
        Box::pin(self.run_loop(desired, shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anycastd.conf");
        write_atomically(&path, "one\n").unwrap();
        write_atomically(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["anycastd.conf"]);
    }

    #[test]
    fn atomic_write_reports_the_path() {
        let err = write_atomically(Path::new("/nonexistent/dir/f.conf"), "x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot write /nonexistent/dir/f.conf"),
            "{err}"
        );
    }

    /// Lines in the file the test's reload_command appends to.
    fn reconfigures(count: &Path) -> usize {
        std::fs::read_to_string(count)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Static format, with a reload_command that adds a line to `count`
    /// per reconfigure instead of talking to BIRD.
    fn counting_config(include: &Path, include6: Option<PathBuf>, count: &Path) -> BirdConfig {
        BirdConfig {
            include_file: include.to_path_buf(),
            include_file6: include6,
            socket: include.with_file_name("unused.ctl"),
            format: crate::config::BirdFormat::Static,
            set_v4: "V4".into(),
            set_v6: "V6".into(),
            route_kind: crate::config::BirdRouteKind::Blackhole,
            reload_command: Some(vec![
                "sh".into(),
                "-c".into(),
                format!("echo reconfigured >> {}", count.display()),
            ]),
            reconfigure_timeout: Duration::from_secs(5),
        }
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_lone_change_applies_at_once_a_burst_costs_at_most_two_stop_withdraws() {
        let dir = tempfile::tempdir().unwrap();
        let include = dir.path().join("anycastd.conf");
        let count = dir.path().join("reconfigures");
        let mut config = counting_config(&include, None, &count);
        // Each configure stays in flight for a while, as a real one over
        // thousands of routes does: the burst's sends all land meanwhile.
        config.reload_command = Some(vec![
            "sh".into(),
            "-c".into(),
            format!("echo reconfigured >> {}; sleep 0.2", count.display()),
        ]);
        let routes = |n: u32| {
            DesiredRoutes::decided(
                crate::route::plain_routes((0..n).map(|i| {
                    IpNet::from(ipnet::Ipv4Net::from(std::net::Ipv4Addr::from(
                        0x0a00_0000 + i,
                    )))
                })),
                Some(std::time::Instant::now()),
            )
        };
        let (tx, rx) = watch::channel(DesiredRoutes::empty());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(BirdBackend::new(config).run_loop(rx, shutdown.clone()));
        wait_for("the start-up write", || reconfigures(&count) == 1).await;

        tx.send(routes(1)).unwrap();
        wait_for("the lone change", || reconfigures(&count) == 2).await;
        assert!(
            std::fs::read_to_string(&include)
                .unwrap()
                .contains("route 10.0.0.0/32 blackhole;")
        );

        // A quiet spell, then a burst.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // 1,000 separate changes in a row: the first goes out at once,
        // everything that came while it was in flight in one more.
        // (Each set holds one route, so the sends themselves take no time
        // worth mentioning even in a debug build.)
        let one = |i: u32| {
            DesiredRoutes::decided(
                crate::route::plain_routes([IpNet::from(ipnet::Ipv4Net::from(
                    std::net::Ipv4Addr::from(0x0a00_0000 + i),
                ))]),
                Some(std::time::Instant::now()),
            )
        };
        let sets: Vec<DesiredRoutes> = (1..=1000).map(one).collect();
        for set in sets {
            tx.send(set).unwrap();
            tokio::task::yield_now().await;
        }
        let want = "channel.\nroute 10.0.3.232/32 blackhole;\n";
        wait_for("the burst's last set", || {
            std::fs::read_to_string(&include).is_ok_and(|c| c.ends_with(want))
        })
        .await;
        wait_for("BIRD told of the last set", || reconfigures(&count) >= 3).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let burst = reconfigures(&count) - 2;
        assert!(
            (1..=2).contains(&burst),
            "1,000 changes cost {burst} reconfigures"
        );

        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(
            reconfigures(&count),
            2 + burst + 1,
            "one more to withdraw all"
        );
        assert!(
            !std::fs::read_to_string(&include)
                .unwrap()
                .contains("route ")
        );
    }

    #[tokio::test]
    async fn a_failed_write_leaves_every_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let include = dir.path().join("anycastd4.conf");
        let count = dir.path().join("reconfigures");
        // Its directory does not exist: every write of it fails.
        let include6 = dir.path().join("missing/anycastd6.conf");
        let mut backend = BirdBackend::new(counting_config(&include, Some(include6), &count));
        std::fs::write(&include, "# before\n").unwrap();
        let routes = crate::route::plain_routes(["192.0.2.1/32".parse().unwrap()]);
        let err = backend.apply(&routes).await.unwrap_err();
        assert!(err.to_string().contains("missing/anycastd6.conf"), "{err}");
        assert_eq!(std::fs::read_to_string(&include).unwrap(), "# before\n");
        assert_eq!(
            reconfigures(&count),
            0,
            "BIRD is not asked to read half a change"
        );
        assert!(backend.reconciler.accepted().is_none());
    }

    #[tokio::test]
    async fn reload_command_success_and_failure() {
        let ok = run_reload_command(
            &["echo".into(), "Reconfigured".into()],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(ok.unwrap(), "Reconfigured");
        let err = run_reload_command(
            &[
                "sh".into(),
                "-c".into(),
                "echo 'bird.conf:1:2 syntax error' >&2; exit 1".into(),
            ],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(err.refused());
        assert!(
            err.to_string().contains("bird.conf:1:2 syntax error"),
            "{err}"
        );
        let missing = run_reload_command(&["/nonexistent/birdc".into()], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(!missing.refused());
    }
}
