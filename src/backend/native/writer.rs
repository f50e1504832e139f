//! The writing half of one BGP connection. A task owns the socket's write
//! half and sends what the session queued, in priority order NOTIFICATION >
//! OPEN and KEEPALIVE > UPDATE (as BIRD's `bgp_fire_tx`). The core loop
//! only queues, and never waits on a socket: a peer that stops reading
//! stalls this task alone, while our hold and keepalive timers keep
//! running. The queue is bounded: past [`MAX_QUEUED_UPDATE_BYTES`] of
//! UPDATEs the session is reset instead.
//!
//! ```text
//! core loop ──push──► Outbox (bounded, by priority) ──► writer task ──► TCP
//!     ▲                                                     │
//!     └──────────── write error (task ends) ◄───────────────┘
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::packet::{self, Message};
use crate::metrics;

/// UPDATE bytes a connection may have queued and not yet written: a full
/// table of 100,000 prefixes is well under 1 MiB.
pub const MAX_QUEUED_UPDATE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    /// The peer has not read what we sent for so long that the UPDATEs
    /// queued for it passed the bound.
    #[error("the send queue is full ({0} bytes of UPDATEs): the peer is not reading")]
    Full(usize),
}

#[derive(Default)]
struct Queue {
    notification: Option<Vec<u8>>,
    /// OPEN and KEEPALIVE, in order.
    control: VecDeque<(&'static str, Vec<u8>)>,
    /// A KEEPALIVE waits in `control`: one is enough.
    keepalive_queued: bool,
    updates: VecDeque<Vec<u8>>,
    update_bytes: usize,
    /// After [`Outbox::close`]: write the NOTIFICATION, if any, then end.
    closing: bool,
    /// A message is being written.
    busy: bool,
}

impl Queue {
    fn is_idle(&self) -> bool {
        !self.busy
            && self.notification.is_none()
            && self.control.is_empty()
            && self.updates.is_empty()
    }
}

/// What the writer does next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Write(&'static str, Vec<u8>),
    Wait,
    Done,
}

/// The queue between the core loop and one connection's writer task.
#[derive(Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Something was queued, or the outbox closed.
    wake: Notify,
    /// The queue went idle.
    idle: Notify,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `message`; never waits.
    pub fn push(&self, message: &Message) -> Result<(), QueueError> {
        let mut queue = self.lock();
        if queue.closing {
            return Ok(());
        }
        match message {
            Message::Notification(_) => {
                queue.notification = Some(packet::encode(message));
            }
            Message::Keepalive => {
                if !queue.keepalive_queued {
                    queue.keepalive_queued = true;
                    queue
                        .control
                        .push_back((message.kind(), packet::encode(message)));
                }
            }
            Message::Update(_) => {
                let bytes = packet::encode(message);
                if queue.update_bytes + bytes.len() > MAX_QUEUED_UPDATE_BYTES {
                    return Err(QueueError::Full(queue.update_bytes));
                }
                queue.update_bytes += bytes.len();
                queue.updates.push_back(bytes);
            }
            Message::Open(_) | Message::RouteRefresh { .. } => {
                queue
                    .control
                    .push_back((message.kind(), packet::encode(message)));
            }
        }
        drop(queue);
        self.wake.notify_one();
        Ok(())
    }

    /// Drops everything queued but a NOTIFICATION; the writer writes that
    /// one, shuts the connection down and ends.
    pub fn close(&self) {
        let mut queue = self.lock();
        queue.closing = true;
        queue.control.clear();
        queue.keepalive_queued = false;
        queue.updates.clear();
        queue.update_bytes = 0;
        drop(queue);
        self.wake.notify_one();
    }

    /// Resolves once nothing is queued or being written.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().is_idle() {
                return;
            }
            notified.await;
        }
    }

    fn next(&self) -> Next {
        let mut queue = self.lock();
        queue.busy = false;
        let next = if let Some(bytes) = queue.notification.take() {
            Next::Write("notification", bytes)
        } else if queue.closing {
            Next::Done
        } else if let Some((kind, bytes)) = queue.control.pop_front() {
            if kind == "keepalive" {
                queue.keepalive_queued = false;
            }
            Next::Write(kind, bytes)
        } else if let Some(bytes) = queue.updates.pop_front() {
            queue.update_bytes -= bytes.len();
            Next::Write("update", bytes)
        } else {
            Next::Wait
        };
        queue.busy = matches!(next, Next::Write(..));
        if queue.is_idle() {
            self.idle.notify_waiters();
        }
        next
    }
}

/// A running writer task; dropping it stops the task.
pub struct Writer {
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Writer {
    pub fn spawn(
        half: OwnedWriteHalf,
        outbox: Arc<Outbox>,
        label: Arc<str>,
        router_id: Arc<str>,
    ) -> Writer {
        Writer {
            task: tokio::spawn(run(half, outbox, label, router_id)),
        }
    }

    /// Resolves when the task ends: `Ok` after [`Outbox::close`], the write
    /// error otherwise. Must not be polled again once resolved.
    pub async fn finished(&mut self) -> std::io::Result<()> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

async fn run(
    mut half: OwnedWriteHalf,
    outbox: Arc<Outbox>,
    label: Arc<str>,
    router_id: Arc<str>,
) -> std::io::Result<()> {
    loop {
        match outbox.next() {
            Next::Write(kind, bytes) => {
                half.write_all(&bytes).await?;
                metrics::bgp_message(&label, &router_id, "sent", kind);
            }
            // `notify_one` keeps a permit when nobody waits: a push between
            // `next` and here is not lost.
            Next::Wait => outbox.wake.notified().await,
            Next::Done => {
                let _ = half.shutdown().await;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::native::packet::{Notification, Update};

    fn update() -> Message {
        Message::Update(Update {
            withdrawn: vec!["192.0.2.1/32".parse().unwrap()],
            ..Update::default()
        })
    }

    fn kinds(outbox: &Outbox) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Next::Write(kind, _) = outbox.next() {
            out.push(kind);
        }
        out
    }

    #[test]
    fn notification_goes_first_then_control_then_updates() {
        let outbox = Outbox::default();
        outbox.push(&update()).unwrap();
        outbox.push(&Message::Keepalive).unwrap();
        outbox.push(&update()).unwrap();
        outbox
            .push(&Message::Notification(Notification::new(6, 2, vec![])))
            .unwrap();
        assert_eq!(
            kinds(&outbox),
            ["notification", "keepalive", "update", "update"]
        );
        assert!(outbox.lock().is_idle());
    }

    #[test]
    fn keepalives_not_yet_written_are_not_queued_twice() {
        let outbox = Outbox::default();
        for _ in 0..100 {
            outbox.push(&Message::Keepalive).unwrap();
        }
        assert_eq!(kinds(&outbox), ["keepalive"]);
        outbox.push(&Message::Keepalive).unwrap();
        assert_eq!(kinds(&outbox), ["keepalive"]);
    }

    #[test]
    fn updates_past_the_bound_are_refused() {
        let outbox = Outbox::default();
        let size = packet::encode(&update()).len();
        let fit = MAX_QUEUED_UPDATE_BYTES / size;
        for _ in 0..fit {
            outbox.push(&update()).unwrap();
        }
        assert_eq!(outbox.push(&update()), Err(QueueError::Full(fit * size)));
        // Control messages still go ahead of the backlog.
        outbox.push(&Message::Keepalive).unwrap();
        assert_eq!(
            outbox.next(),
            Next::Write("keepalive", packet::encode(&Message::Keepalive))
        );
    }

    #[test]
    fn close_keeps_only_the_notification() {
        let outbox = Outbox::default();
        outbox.push(&update()).unwrap();
        outbox.push(&Message::Keepalive).unwrap();
        outbox
            .push(&Message::Notification(Notification::new(4, 0, vec![])))
            .unwrap();
        outbox.close();
        outbox.push(&update()).unwrap();
        assert!(matches!(outbox.next(), Next::Write("notification", _)));
        assert_eq!(outbox.next(), Next::Done);
    }
}
