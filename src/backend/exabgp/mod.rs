//! The `exabgp` backend: anycastd runs under ExaBGP's `process` directive,
//! writes route commands on stdout and reads ExaBGP's acknowledgements on
//! stdin. Decisions live in [`protocol`]; this module only moves lines.
//!
//! stdout belongs to ExaBGP: this is its only writer, and it writes whole
//! lines, flushed once per change. EOF on stdin or a broken pipe on stdout
//! means ExaBGP has gone, and anycastd exits (ExaBGP respawns it if it wants).

pub mod protocol;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lines::{BoundedLines, InputLine};
use super::{Backend, BackendFuture, Backoff};
use crate::config::Config;
use crate::metrics;
use crate::route::{AnnouncedReporter, DesiredRoutes};
use protocol::{AckOutcome, LineFormat, MAX_LINE, Reconciler, RouteCommand, parse_ack};

const NAME: &str = "exabgp";

/// Why the ExaBGP backend stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExabgpError {
    /// EOF on stdin: ExaBGP stopped, or restarted this helper.
    #[error("ExaBGP closed our stdin (it stopped or is restarting us)")]
    InputClosed,
    /// EPIPE on stdout.
    #[error("ExaBGP closed our stdout (broken pipe)")]
    OutputClosed,
    #[error("cannot write to ExaBGP: {0}")]
    Write(std::io::Error),
    #[error("cannot read from ExaBGP: {0}")]
    Read(std::io::Error),
    /// ExaBGP said `shutdown`.
    #[error("ExaBGP is shutting down")]
    PeerShutdown,
}

/// Speaks ExaBGP's process API over a reader (its acks) and a writer (our commands).
pub struct ExabgpBackend<R, W> {
    /// `None` when there is no ExaBGP to read from (stdin is not a pipe).
    input: Option<R>,
    output: W,
    format: LineFormat,
    reconciler: Reconciler,
    shutdown_timeout: Duration,
    announced: AnnouncedReporter,
}

impl ExabgpBackend<tokio::io::Stdin, tokio::io::Stdout> {
    /// The real thing: ExaBGP on stdin/stdout. ExaBGP gives its helpers a
    /// pipe (or socket) for stdin; anything else (a terminal, /dev/null
    /// under nohup or CI) means a person is trying anycastd: the lines are
    /// printed for them and stdin is left alone, so its EOF does not mean
    /// ExaBGP left.
    pub fn stdio(config: &Config) -> Self {
        let input = stdin_is_a_pipe().then(tokio::io::stdin);
        if input.is_none() {
            tracing::info!(
                "standard input is not a pipe: no ExaBGP to read from; \
                 printing its commands on standard output"
            );
        }
        ExabgpBackend::new(config, input, tokio::io::stdout())
    }
}

/// Whether standard input is a pipe or a socket, as ExaBGP's are.
fn stdin_is_a_pipe() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .map(|m| m.file_type().is_fifo() || m.file_type().is_socket())
        .unwrap_or(false)
}

/// What ExaBGP writes on our stdin, in lines of at most [`MAX_LINE`].
struct Input<R> {
    lines: BoundedLines<R>,
    /// Whether an over-long line was already logged.
    warned_long: bool,
}

impl<R: AsyncRead + Unpin> Input<R> {
    fn new(reader: R) -> Input<R> {
        Input {
            lines: BoundedLines::new(reader, MAX_LINE),
            warned_long: false,
        }
    }

    /// The next line; `None` at EOF.
    async fn next(&mut self) -> Result<Option<String>, ExabgpError> {
        loop {
            match self.lines.next().await.map_err(ExabgpError::Read)? {
                Some(InputLine::Text(text)) => return Ok(Some(text)),
                Some(InputLine::TooLong) => {
                    metrics::backend_error(NAME, "line_too_long");
                    if !self.warned_long {
                        self.warned_long = true;
                        tracing::warn!(
                            limit = MAX_LINE,
                            "ExaBGP sent a line longer than the limit; ignored (logged once)"
                        );
                    }
                }
                None => return Ok(None),
            }
        }
    }
}

impl<R, W> ExabgpBackend<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    pub fn new(config: &Config, input: Option<R>, output: W) -> Self {
        ExabgpBackend {
            input,
            output,
            format: LineFormat {
                next_hop: config.exabgp.next_hop,
                next_hop6: config.exabgp.next_hop6,
                local_asn: config.local_asn,
            },
            reconciler: Reconciler::new(config.all_routes()),
            shutdown_timeout: config.exabgp.shutdown_timeout,
            announced: AnnouncedReporter::default(),
        }
    }

    /// Reports what it announces to `announced`.
    pub fn reporting_to(mut self, announced: AnnouncedReporter) -> Self {
        self.announced = announced;
        self
    }

    async fn run_loop(
        mut self,
        mut desired: watch::Receiver<DesiredRoutes>,
        shutdown: CancellationToken,
    ) -> Result<(), ExabgpError> {
        let mut lines = self.input.take().map(Input::new);
        // Retries of refused commands: while faulted, at least once a second.
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
        let mut retry_at: Option<Instant> = None;
        // Nothing is written until every service has its first verdict: a
        // respawned helper then leaves the routes ExaBGP kept for it alone
        // when they are still right, instead of withdrawing and announcing
        // them again (a flap upstream).
        let mut current = desired.borrow_and_update().clone();
        while !current.decided {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return self.withdraw_all(lines).await,
                changed = desired.changed() => {
                    if changed.is_err() {
                        return self.withdraw_all(lines).await;
                    }
                    current = desired.borrow_and_update().clone();
                }
                line = next_line(&mut lines) => {
                    self.on_line(line?)?;
                }
            }
        }
        self.apply(&current).await?;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                changed = desired.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    current = desired.borrow_and_update().clone();
                    self.apply(&current).await?;
                }
                line = next_line(&mut lines) => {
                    match self.on_line(line?)? {
                        Some(true) => backoff.reset(),
                        Some(false) if retry_at.is_none() => {
                            retry_at = Some(Instant::now() + backoff.next_delay());
                        }
                        _ => {}
                    }
                }
                _ = sleep_until(retry_at), if retry_at.is_some() => {
                    retry_at = None;
                    self.apply(&current).await?;
                }
            }
        }
        self.withdraw_all(lines).await
    }

    /// Handles one line from ExaBGP: `Some(accepted)` for an ack.
    fn on_line(&mut self, line: Option<String>) -> Result<Option<bool>, ExabgpError> {
        let Some(line) = line else {
            return Err(ExabgpError::InputClosed);
        };
        let Some(ack) = parse_ack(&line) else {
            tracing::debug!(line = %line, "ignoring a line from ExaBGP");
            return Ok(None);
        };
        match self.reconciler.acknowledge(ack) {
            AckOutcome::Accepted(_) => Ok(Some(true)),
            AckOutcome::Refused(command) => {
                metrics::backend_error(NAME, "command_refused");
                tracing::warn!(
                    command = %self.format.line(&command),
                    "ExaBGP refused a command; will retry with backoff"
                );
                Ok(Some(false))
            }
            AckOutcome::Unmatched if ack == protocol::Ack::Shutdown => {
                Err(ExabgpError::PeerShutdown)
            }
            AckOutcome::Unmatched => Ok(None),
        }
    }

    /// Writes the commands that make ExaBGP match `desired`, flushed.
    async fn apply(&mut self, desired: &DesiredRoutes) -> Result<(), ExabgpError> {
        let commands = self.reconciler.reconcile(&desired.routes);
        if commands.is_empty() {
            return Ok(());
        }
        self.write(&commands).await?;
        if let Some(at) = desired.changed_at {
            metrics::route_change_latency(NAME, at.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn write(&mut self, commands: &[RouteCommand]) -> Result<(), ExabgpError> {
        let mut text = String::with_capacity(commands.len() * 48);
        let (mut announced, mut withdrawn) = (0, 0);
        for command in commands {
            text.push_str(&self.format.line(command));
            text.push('\n');
            match command {
                RouteCommand::Announce(..) => announced += 1,
                RouteCommand::Withdraw(_) => withdrawn += 1,
            }
        }
        let result = async {
            self.output.write_all(text.as_bytes()).await?;
            self.output.flush().await
        }
        .await;
        if let Err(e) = result {
            metrics::backend_error(NAME, "write");
            return Err(if e.kind() == std::io::ErrorKind::BrokenPipe {
                ExabgpError::OutputClosed
            } else {
                ExabgpError::Write(e)
            });
        }
        metrics::backend_updates(NAME, "announce", announced);
        metrics::backend_updates(NAME, "withdraw", withdrawn);
        metrics::routes_announced(NAME, self.reconciler.announced_len());
        self.announced.report(NAME, &self.reconciler.announced());
        tracing::debug!(announced, withdrawn, "sent route changes to ExaBGP");
        Ok(())
    }

    /// Withdraws everything, then waits (bounded) for ExaBGP to acknowledge.
    async fn withdraw_all(mut self, mut lines: Option<Input<R>>) -> Result<(), ExabgpError> {
        self.apply(&DesiredRoutes::empty()).await?;
        let deadline = Instant::now() + self.shutdown_timeout;
        while lines.is_some() && self.reconciler.awaiting_ack() > 0 {
            let line = tokio::select! {
                line = next_line(&mut lines) => line,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        waiting = self.reconciler.awaiting_ack(),
                        "ExaBGP did not acknowledge every withdrawal in time"
                    );
                    break;
                }
            };
            match self.on_line(line?) {
                Ok(_) => {}
                // ExaBGP going away now still got our withdrawals.
                Err(ExabgpError::InputClosed | ExabgpError::PeerShutdown) => break,
                Err(e) => return Err(e),
            }
        }
        tracing::info!("withdrew all routes from ExaBGP");
        Ok(())
    }
}

async fn next_line<R: AsyncRead + Unpin>(
    lines: &mut Option<Input<R>>,
) -> Result<Option<String>, ExabgpError> {
    match lines {
        Some(lines) => lines.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<R, W> Backend for ExabgpBackend<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    fn name(&self) -> &'static str {
        NAME
    }

    fn shutdown_bound(&self) -> Duration {
        self.shutdown_timeout
    }

    fn run(
        self: Box<Self>,
        desired: watch::Receiver<DesiredRoutes>,
        shutdown: CancellationToken,
    ) -> BackendFuture {
        Box::pin(async move { Ok(self.run_loop(desired, shutdown).await?) })
    }
}

#[cfg(test)]
mod tests;
