//! `assigned_address`: the address must be configured on this host, on an
//! interface that is up (running), and on the named interface when one is
//! given.
//!
//! The check hears rtnetlink address and link events (one listener thread
//! per process, shared by every `assigned_address` check): an address
//! removed or a link going down wakes the service's round at once, so its
//! routes are withdrawn within milliseconds instead of at the next interval.
//! The periodic rounds stay as the backstop, and the verdict itself always
//! comes from a fresh listing of the host's addresses.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::{AttemptFuture, Check};
use crate::config::model::AssignedAddressSpec;

pub struct AssignedAddress {
    addresses: Vec<IpAddr>,
    interface: Option<String>,
    wakeup: Arc<Notify>,
    /// Whether the rtnetlink listener took this check, decided once.
    subscribed: OnceLock<bool>,
}

/// One interface address of the host.
struct Held {
    interface: String,
    ip: IpAddr,
    /// The interface is up and running (IFF_RUNNING): admin up with carrier.
    running: bool,
}

impl AssignedAddress {
    pub fn new(spec: &AssignedAddressSpec) -> AssignedAddress {
        let addresses = spec
            .ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(spec.ipv6.map(IpAddr::V6))
            .collect();
        AssignedAddress {
            addresses,
            interface: spec.interface.clone(),
            wakeup: Arc::new(Notify::new()),
            subscribed: OnceLock::new(),
        }
    }

    /// The decision, given the host's interface addresses.
    fn judge(&self, assigned: &[Held]) -> Result<(), String> {
        for wanted in &self.addresses {
            let holders: Vec<&Held> = assigned.iter().filter(|h| h.ip == *wanted).collect();
            if holders.is_empty() {
                return Err(format!("{wanted} is not assigned to any interface"));
            }
            let names = || {
                holders
                    .iter()
                    .map(|h| h.interface.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let eligible: Vec<&&Held> = holders
                .iter()
                .filter(|h| {
                    self.interface
                        .as_ref()
                        .is_none_or(|want| h.interface == *want)
                })
                .collect();
            if eligible.is_empty() {
                let want = self.interface.as_deref().unwrap_or_default();
                return Err(format!(
                    "{wanted} is assigned to {}, expected {want}",
                    names()
                ));
            }
            if !eligible.iter().any(|h| h.running) {
                return Err(format!(
                    "{wanted} is assigned to {}, which is down",
                    names()
                ));
            }
        }
        Ok(())
    }
}

impl Check for AssignedAddress {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            let interfaces = if_addrs::get_if_addrs()
                .map_err(|e| format!("cannot list interface addresses: {e}"))?;
            let assigned: Vec<Held> = interfaces
                .into_iter()
                .map(|i| Held {
                    running: i.is_oper_up(),
                    ip: i.addr.ip(),
                    interface: i.name,
                })
                .collect();
            self.judge(&assigned)
        })
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        let subscribed = *self
            .subscribed
            .get_or_init(|| rtnl::subscribe(&self.wakeup));
        subscribed.then(|| self.wakeup.clone())
    }
}

/// The process's one rtnetlink listener: a thread blocked on a netlink
/// socket subscribed to address and link changes, waking every subscribed
/// check on each event. It holds its subscribers weakly and ends, closing
/// the socket, once none is left (checks dropped by a reload or shutdown);
/// the next subscriber starts a new one.
mod rtnl {
    use super::*;
    use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

    /// rtnetlink multicast groups (linux/rtnetlink.h).
    const RTNLGRP_LINK: u32 = 1;
    const RTNLGRP_IPV4_IFADDR: u32 = 5;
    const RTNLGRP_IPV6_IFADDR: u32 = 9;
    /// How often an idle listener looks whether anyone still listens.
    const IDLE_CHECK: Duration = Duration::from_secs(1);

    struct Listener {
        subscribers: Mutex<Subscribers>,
    }

    struct Subscribers {
        /// False once the thread has decided to end.
        alive: bool,
        wakeups: Vec<Weak<Notify>>,
    }

    static LISTENER: Mutex<Weak<Listener>> = Mutex::new(Weak::new());
    /// Set once the socket could not be had: no more tries, logged once.
    static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

    /// Adds `wakeup` to the listener, starting it if needed. False when
    /// events cannot be had here: the check then runs on its interval only.
    pub(super) fn subscribe(wakeup: &Arc<Notify>) -> bool {
        if UNAVAILABLE.load(Ordering::Relaxed) {
            return false;
        }
        let mut current = LISTENER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(listener) = current.upgrade() {
            let mut subscribers = listener
                .subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if subscribers.alive {
                subscribers.wakeups.push(Arc::downgrade(wakeup));
                return true;
            }
        }
        let listener = Arc::new(Listener {
            subscribers: Mutex::new(Subscribers {
                alive: true,
                wakeups: vec![Arc::downgrade(wakeup)],
            }),
        });
        let started = open().and_then(|socket| {
            let listener = listener.clone();
            std::thread::Builder::new()
                .name("anycastd-rtnl".into())
                .spawn(move || listen(socket, listener))
        });
        match started {
            Ok(_) => {
                *current = Arc::downgrade(&listener);
                true
            }
            Err(e) => {
                if !UNAVAILABLE.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        "cannot listen to rtnetlink address and link events; assigned_address checks run on their interval only"
                    );
                }
                false
            }
        }
    }

    fn open() -> std::io::Result<Socket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        for group in [RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR] {
            socket.add_membership(group)?;
        }
        // Room for a burst (a link going down takes its addresses along);
        // an overflow is still seen, as ENOBUFS, and wakes everyone.
        let _ = socket.set_rx_buf_sz(1 << 20);
        super::super::set_receive_timeout(&socket, IDLE_CHECK)?;
        Ok(socket)
    }

    fn listen(socket: Socket, listener: Arc<Listener>) {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let event = match socket.recv(&mut &mut buffer[..], 0) {
                Ok(_) => true,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => true,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "rtnetlink listener failed; assigned_address checks run on their interval only");
                    listener
                        .subscribers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .alive = false;
                    return;
                }
            };
            let mut subscribers = listener
                .subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            subscribers.wakeups.retain(|w| w.strong_count() > 0);
            if subscribers.wakeups.is_empty() {
                subscribers.alive = false;
                return;
            }
            if event {
                for wakeup in subscribers.wakeups.iter().filter_map(Weak::upgrade) {
                    wakeup.notify_one();
                }
            }
        }
    }

    /// Whether a listener thread is running (for tests).
    #[cfg(test)]
    pub(super) fn running() -> bool {
        LISTENER
            .lock()
            .unwrap()
            .upgrade()
            .is_some_and(|l| l.subscribers.lock().unwrap().alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ipv4: Option<&str>, ipv6: Option<&str>, interface: Option<&str>) -> AssignedAddress {
        AssignedAddress::new(&AssignedAddressSpec {
            ipv4: ipv4.map(|a| a.parse().unwrap()),
            ipv6: ipv6.map(|a| a.parse().unwrap()),
            interface: interface.map(str::to_string),
        })
    }

    fn host() -> Vec<Held> {
        [
            ("lo", "127.0.0.1", true),
            ("lo", "::1", true),
            ("eth0", "192.0.2.5", true),
            ("eth1", "192.0.2.9", false),
        ]
        .into_iter()
        .map(|(interface, ip, running)| Held {
            interface: interface.into(),
            ip: ip.parse().unwrap(),
            running,
        })
        .collect()
    }

    #[test]
    fn an_address_on_a_down_interface_fails() {
        assert_eq!(
            check(Some("192.0.2.9"), None, None).judge(&host()),
            Err("192.0.2.9 is assigned to eth1, which is down".into())
        );
        assert_eq!(
            check(Some("192.0.2.9"), None, Some("eth1")).judge(&host()),
            Err("192.0.2.9 is assigned to eth1, which is down".into())
        );
        // Held by a running interface as well: passes without `interface`.
        let mut both = host();
        both.push(Held {
            interface: "eth2".into(),
            ip: "192.0.2.9".parse().unwrap(),
            running: true,
        });
        assert_eq!(check(Some("192.0.2.9"), None, None).judge(&both), Ok(()));
    }

    #[test]
    fn the_rtnetlink_listener_is_shared_and_ends_with_its_last_check() {
        let a = check(Some("127.0.0.1"), None, None);
        let b = check(Some("127.0.0.1"), None, None);
        let (Some(_), Some(_)) = (a.wakeups(), b.wakeups()) else {
            // No rtnetlink here (a sandbox): the interval alone runs rounds.
            return;
        };
        assert!(rtnl::running());
        drop((a, b));
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while rtnl::running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Other tests may hold checks of their own; only a lone run can tell.
        let _ = rtnl::running();
    }

    #[test]
    fn present_passes_absent_fails() {
        assert_eq!(check(Some("192.0.2.5"), None, None).judge(&host()), Ok(()));
        assert_eq!(
            check(Some("192.0.2.6"), None, None).judge(&host()),
            Err("192.0.2.6 is not assigned to any interface".into())
        );
        assert_eq!(check(None, Some("::1"), Some("lo")).judge(&host()), Ok(()));
    }

    #[test]
    fn interface_must_match() {
        assert_eq!(
            check(Some("192.0.2.5"), None, Some("dummy0")).judge(&host()),
            Err("192.0.2.5 is assigned to eth0, expected dummy0".into())
        );
    }

    #[tokio::test]
    async fn loopback_is_assigned_on_this_host() {
        assert_eq!(check(Some("127.0.0.1"), None, None).attempt().await, Ok(()));
        assert!(
            check(Some("192.0.2.254"), None, None)
                .attempt()
                .await
                .is_err()
        );
    }
}
