//! Keeps the backend's tasks (one per peer, one per listening socket)
//! running until shutdown. A task that ends or panics before shutdown is a
//! fault: it is logged at error, counted (`anycastd_backend_errors_total`,
//! kind `task`) and started again from its config after a short delay. A
//! peer task starts with a fresh session, so the peer gets our routes again
//! from scratch.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics;

type Start = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A task the supervisor keeps running: a name for logs, and how to start
/// it (again).
pub struct Task {
    name: String,
    start: Start,
}

impl Task {
    pub fn new<F>(name: String, start: F) -> Task
    where
        F: Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static,
    {
        Task {
            name,
            start: Box::new(start),
        }
    }
}

/// Runs `tasks` until `shutdown`, restarting any that ends before it after
/// `restart_after`. After `shutdown`, waits up to `bound` for every task to
/// finish; returns whether they all did.
pub async fn run(
    tasks: Vec<Task>,
    shutdown: CancellationToken,
    restart_after: Duration,
    bound: Duration,
) -> bool {
    let mut running = JoinSet::new();
    let mut which = HashMap::new();
    for (i, task) in tasks.iter().enumerate() {
        which.insert(running.spawn((task.start)()).id(), i);
    }
    loop {
        let ended = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(ended) = running.join_next_with_id() => ended,
        };
        if shutdown.is_cancelled() {
            break;
        }
        let (id, how) = match ended {
            Ok((id, ())) => (id, "ended".to_string()),
            Err(e) if e.is_panic() => {
                let id = e.id();
                (id, format!("panicked: {}", panic_message(e.into_panic())))
            }
            Err(e) => (e.id(), "was cancelled".to_string()),
        };
        let Some(i) = which.remove(&id) else { continue };
        let task = &tasks[i];
        tracing::error!(task = %task.name, "{} {how}; restarting it in {restart_after:?}", task.name);
        metrics::backend_error("native", "task");
        let start = (task.start)();
        let delayed = async move {
            tokio::time::sleep(restart_after).await;
            start.await;
        };
        which.insert(running.spawn(delayed).id(), i);
    }
    let all_done = async { while running.join_next().await.is_some() {} };
    tokio::time::timeout(bound, all_done).await.is_ok()
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::Instant;

    use super::*;

    /// How a test task's first run ends.
    #[derive(Clone, Copy)]
    enum FirstRun {
        PanicsAfterOneSecond,
        Returns,
        RunsUntilShutdown,
    }

    /// A task that counts its starts; its first run ends as `first` says,
    /// later runs report their start on `restarted` and run until shutdown.
    fn test_task(
        name: &'static str,
        first: FirstRun,
        starts: Arc<AtomicU32>,
        restarted: tokio::sync::mpsc::UnboundedSender<(&'static str, Instant)>,
        shutdown: CancellationToken,
    ) -> Task {
        Task::new(name.into(), move || {
            let n = starts.fetch_add(1, Ordering::SeqCst);
            let (restarted, shutdown) = (restarted.clone(), shutdown.clone());
            Box::pin(async move {
                match (n, first) {
                    (0, FirstRun::PanicsAfterOneSecond) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        panic!("injected");
                    }
                    (0, FirstRun::Returns) => return,
                    (0, FirstRun::RunsUntilShutdown) => {}
                    _ => {
                        let _ = restarted.send((name, Instant::now()));
                    }
                }
                shutdown.cancelled().await;
            })
        })
    }

    /// Issue 10 (a dead peer task is restarted): a task that panics, and
    /// one that returns, are each started again within the restart delay,
    /// while the others keep running; none is restarted after shutdown.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_peer_task_is_restarted() {
        let shutdown = CancellationToken::new();
        let starts: Vec<Arc<AtomicU32>> = (0..3).map(|_| Arc::default()).collect();
        let (tx, mut restarted) = tokio::sync::mpsc::unbounded_channel();
        let tasks = vec![
            test_task(
                "panicky",
                FirstRun::PanicsAfterOneSecond,
                starts[0].clone(),
                tx.clone(),
                shutdown.clone(),
            ),
            test_task(
                "quitter",
                FirstRun::Returns,
                starts[1].clone(),
                tx.clone(),
                shutdown.clone(),
            ),
            test_task(
                "steady",
                FirstRun::RunsUntilShutdown,
                starts[2].clone(),
                tx,
                shutdown.clone(),
            ),
        ];
        let started = Instant::now();
        let supervisor = tokio::spawn(run(
            tasks,
            shutdown.clone(),
            Duration::from_millis(500),
            Duration::from_secs(1),
        ));
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (name, at) = restarted.recv().await.unwrap();
            seen.push((name, (at - started).as_millis()));
        }
        seen.sort();
        // The quitter ended at once, the panicky one after 1 s: each back
        // 500 ms later.
        assert_eq!(seen, [("panicky", 1500), ("quitter", 500)]);
        shutdown.cancel();
        assert!(supervisor.await.unwrap(), "all tasks finished");
        let starts: Vec<u32> = starts.iter().map(|s| s.load(Ordering::SeqCst)).collect();
        assert_eq!(starts, [2, 2, 1], "the steady one never restarted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_does_not_stop_is_bounded() {
        let shutdown = CancellationToken::new();
        let tasks = vec![Task::new("stuck".into(), || {
            Box::pin(std::future::pending::<()>())
        })];
        shutdown.cancel();
        let started = Instant::now();
        assert!(
            !run(
                tasks,
                shutdown,
                Duration::from_millis(500),
                Duration::from_secs(3)
            )
            .await
        );
        assert_eq!(started.elapsed().as_secs(), 3);
    }
}
