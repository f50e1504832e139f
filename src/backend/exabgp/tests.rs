//! The I/O loop against an in-memory "ExaBGP": pipes, not processes.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, duplex};
use tokio::time::timeout;

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

    /// Nothing written for `window` (a paused clock makes this instant).
    async fn expect_silence(&mut self, window: Duration) {
        if let Ok(line) = timeout(window, self.commands.next_line()).await {
            panic!("expected no line, got {line:?}");
        }
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
    let backend = ExabgpBackend::new(&config(), Some(ours_in), ours_out);
    let task = tokio::spawn(Box::new(backend).run(desired, shutdown));
    let fake = FakeExabgp {
        commands: BufReader::new(theirs_in).lines(),
        acks: theirs_out,
    };
    (fake, task)
}

fn routes(list: &[&str]) -> DesiredRoutes {
    DesiredRoutes::decided(
        crate::route::plain_routes(list.iter().map(|r| r.parse().unwrap())),
        Some(Instant::now()),
    )
}

#[tokio::test]
async fn withdraws_at_start_announces_on_change_withdraws_at_shutdown() {
    let (tx, rx) = watch::channel(DesiredRoutes::empty());
    let shutdown = CancellationToken::new();
    let (mut exabgp, task) = start(rx, shutdown.clone());
    tx.send(routes(&[])).unwrap();
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
    let (tx, rx) = watch::channel(DesiredRoutes::empty());
    let (mut exabgp, task) = start(rx, CancellationToken::new());
    tx.send(routes(&[])).unwrap();
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
    tx.send(routes(&[])).unwrap();
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
    shutdown.cancel();
    exabgp
        .expect("withdraw route 192.0.2.1/32 next-hop self")
        .await;
    // No acks at all: the backend gives up after shutdown_timeout.
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_respawned_helper_writes_nothing_until_decided_then_reconciles_once() {
    let (tx, rx) = watch::channel(DesiredRoutes::empty());
    let (mut exabgp, _task) = start(rx, CancellationToken::new());
    exabgp.expect_silence(Duration::from_secs(10)).await;
    // Not decided yet: an early partial set changes nothing either.
    tx.send(DesiredRoutes {
        decided: false,
        ..routes(&["192.0.2.1/32"])
    })
    .unwrap();
    exabgp.expect_silence(Duration::from_secs(1)).await;
    tx.send(routes(&["192.0.2.1/32"])).unwrap();
    // ExaBGP may still hold both routes from the crashed predecessor: the
    // unwanted one goes, the wanted one is stated again (a no-op for
    // ExaBGP when it still holds it).
    exabgp
        .expect("withdraw route 2001:db8::1/128 next-hop 2001:db8::ff")
        .await;
    exabgp
        .expect("announce route 192.0.2.1/32 next-hop self")
        .await;
    exabgp.expect_silence(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_with_pids_means_exabgp_is_stopping() {
    let (tx, rx) = watch::channel(DesiredRoutes::empty());
    let (mut exabgp, task) = start(rx, CancellationToken::new());
    tx.send(routes(&[])).unwrap();
    exabgp.startup_withdrawals().await;
    exabgp.ack("shutdown 4242 1").await;
    let err = timeout(Duration::from_secs(5), task)
        .await
        .expect("the backend stops at once")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Exabgp(ExabgpError::PeerShutdown)),
        "{err}"
    );
}

#[tokio::test]
async fn an_overlong_line_is_dropped_and_the_next_ack_still_counts() {
    let (tx, rx) = watch::channel(DesiredRoutes::empty());
    let shutdown = CancellationToken::new();
    let (mut exabgp, task) = start(rx, shutdown.clone());
    tx.send(routes(&[])).unwrap();
    exabgp
        .expect("withdraw route 192.0.2.1/32 next-hop self")
        .await;
    exabgp
        .expect("withdraw route 2001:db8::1/128 next-hop 2001:db8::ff")
        .await;
    let long = "x".repeat(protocol::MAX_LINE * 3);
    exabgp.ack(&long).await;
    exabgp.ack("done").await;
    exabgp.ack("done").await;
    shutdown.cancel();
    // Both acks were matched: nothing is left waiting at shutdown.
    timeout(Duration::from_secs(1), task)
        .await
        .expect("no ack outstanding")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_attribute_change_is_one_announce_line_with_the_new_attributes() {
    use crate::route::{Announcement, Community, RouteAttributes, RouteClass};
    let (tx, rx) = watch::channel(DesiredRoutes::empty());
    let shutdown = CancellationToken::new();
    let (mut exabgp, task) = start(rx, shutdown.clone());
    tx.send(routes(&["192.0.2.1/32"])).unwrap();
    exabgp
        .expect("withdraw route 2001:db8::1/128 next-hop 2001:db8::ff")
        .await;
    exabgp
        .expect("announce route 192.0.2.1/32 next-hop self")
        .await;
    exabgp.ack("done").await;
    exabgp.ack("done").await;

    let mut drained = routes(&["192.0.2.1/32"]);
    std::sync::Arc::make_mut(&mut drained.routes).insert(
        "192.0.2.1/32".parse().unwrap(),
        Announcement {
            class: RouteClass::Draining,
            attributes: std::sync::Arc::new(RouteAttributes {
                med: Some(10),
                communities: vec![Community::GRACEFUL_SHUTDOWN],
                ..RouteAttributes::default()
            }),
        },
    );
    tx.send(drained).unwrap();
    exabgp
        .expect("announce route 192.0.2.1/32 next-hop self med 10 community [65535:0]")
        .await;
    exabgp.ack("done").await;

    tx.send(routes(&["192.0.2.1/32"])).unwrap();
    exabgp
        .expect("announce route 192.0.2.1/32 next-hop self")
        .await;
    exabgp.ack("done").await;

    shutdown.cancel();
    exabgp
        .expect("withdraw route 192.0.2.1/32 next-hop self")
        .await;
    exabgp.ack("done").await;
    task.await.unwrap().unwrap();
}
