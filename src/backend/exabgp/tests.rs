//! The I/O loop against an in-memory "ExaBGP": pipes, not processes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, duplex};

use super::*;
use crate::backend::BackendError;
use crate::config::{BackendKind, Format, load_str};

fn config() -> Config {
    let text = r#"
announcer: {routes: [192.0.2.1/32, "2001:db8::1/128"], exabgp: {next_hop6: "2001:db8::ff", shutdown_timeout: 2s}}
services:
  - name: a
    check_interval: 1s
    checks: [{kind: assigned_address, spec: {ipv4: 127.0.0.1}}]
"#;
    load_str(
        text,
        Format::Yaml,
        Path::new("t.yaml"),
        Some(BackendKind::Exabgp),
    )
    .unwrap()
}

struct FakeExabgp {
    /// What anycastd wrote.
    commands: tokio::io::Lines<BufReader<DuplexStream>>,
    /// Where the acks go.
    acks: DuplexStream,
}

impl FakeExabgp {
    async fn expect(&mut self, line: &str) {
        let got = self.commands.next_line().await.unwrap();
        assert_eq!(got.as_deref(), Some(line));
    }

    /// The withdrawal of every configured route that starts each run, acked.
    async fn startup_withdrawals(&mut self) {
        self.expect("withdraw route 192.0.2.1/32 next-hop self")
            .await;
        self.expect("withdraw route 2001:db8::1/128 next-hop 2001:db8::ff")
            .await;
        self.ack("done").await;
        self.ack("done").await;
    }

    async fn ack(&mut self, word: &str) {
        self.acks
            .write_all(format!("{word}\n").as_bytes())
            .await
            .unwrap();
    }
}

fn start(
    desired: watch::Receiver<DesiredRoutes>,
    shutdown: CancellationToken,
) -> (
    FakeExabgp,
    tokio::task::JoinHandle<Result<(), BackendError>>,
) {
    let (ours_out, theirs_in) = duplex(1 << 16);
    let (theirs_out, ours_in) = duplex(1 << 16);
    let backend = ExabgpBackend::new(&config(), Some(BufReader::new(ours_in)), ours_out);
    let task = tokio::spawn(Box::new(backend).run(desired, shutdown));
    let fake = FakeExabgp {
        commands: BufReader::new(theirs_in).lines(),
        acks: theirs_out,
    };
    (fake, task)
}

fn routes(list: &[&str]) -> DesiredRoutes {
    DesiredRoutes {
        routes: list
            .iter()
            .map(|r| r.parse().unwrap())
            .collect::<BTreeSet<_>>(),
        changed_at: Some(Instant::now()),
    }
}

#[tokio::test]
async fn withdraws_at_start_announces_on_change_withdraws_at_shutdown() {
    let (tx, rx) = watch::channel(DesiredRoutes::empty());
    let shutdown = CancellationToken::new();
    let (mut exabgp, task) = start(rx, shutdown.clone());
    exabgp.startup_withdrawals().await;

    tx.send(routes(&["192.0.2.1/32", "2001:db8::1/128"]))
        .unwrap();
    exabgp
        .expect("announce route 192.0.2.1/32 next-hop self")
        .await;
    exabgp
        .expect("announce route 2001:db8::1/128 next-hop 2001:db8::ff")
        .await;
    exabgp.ack("done").await;
    exabgp.ack("done").await;

    tx.send(routes(&["2001:db8::1/128"])).unwrap();
    exabgp
        .expect("withdraw route 192.0.2.1/32 next-hop self")
        .await;
    exabgp.ack("done").await;

    shutdown.cancel();
    exabgp
        .expect("withdraw route 2001:db8::1/128 next-hop 2001:db8::ff")
        .await;
    exabgp.ack("done").await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn eof_on_stdin_means_exabgp_is_gone() {
    let (_tx, rx) = watch::channel(DesiredRoutes::empty());
    let (mut exabgp, task) = start(rx, CancellationToken::new());
    exabgp
        .expect("withdraw route 192.0.2.1/32 next-hop self")
        .await;
    drop(exabgp.acks);
    let err = task.await.unwrap().unwrap_err();
    assert!(
        matches!(err, BackendError::Exabgp(ExabgpError::InputClosed)),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn refused_announce_is_retried_after_backoff() {
    let (tx, rx) = watch::channel(DesiredRoutes::empty());
    let (mut exabgp, _task) = start(rx, CancellationToken::new());
    exabgp.startup_withdrawals().await;
    tx.send(routes(&["192.0.2.1/32"])).unwrap();
    exabgp
        .expect("announce route 192.0.2.1/32 next-hop self")
        .await;
    exabgp.ack("error").await;
    // Paused time auto-advances to the 1 s retry.
    exabgp
        .expect("announce route 192.0.2.1/32 next-hop self")
        .await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_forever_for_acks() {
    let (_tx, rx) = watch::channel(DesiredRoutes::empty());
    let shutdown = CancellationToken::new();
    let (mut exabgp, task) = start(rx, shutdown.clone());
    exabgp
        .expect("withdraw route 192.0.2.1/32 next-hop self")
        .await;
    shutdown.cancel();
    // No acks at all: the backend gives up after shutdown_timeout.
    task.await.unwrap().unwrap();
}
