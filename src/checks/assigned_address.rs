//! `assigned_address`: the address must be configured on this host, and on the
//! named interface when one is given.

use std::net::IpAddr;

use super::{AttemptFuture, Check};
use crate::config::model::AssignedAddressSpec;

pub struct AssignedAddress {
    addresses: Vec<IpAddr>,
    interface: Option<String>,
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
        }
    }

    /// The decision, given the host's (interface, address) pairs.
    fn judge(&self, assigned: &[(String, IpAddr)]) -> Result<(), String> {
        for wanted in &self.addresses {
            let holders: Vec<&str> = assigned
                .iter()
                .filter(|(_, ip)| ip == wanted)
                .map(|(name, _)| name.as_str())
                .collect();
            match (&self.interface, holders.is_empty()) {
                (_, true) => return Err(format!("{wanted} is not assigned to any interface")),
                (Some(want), false) if !holders.contains(&want.as_str()) => {
                    return Err(format!(
                        "{wanted} is assigned to {}, expected {want}",
                        holders.join(", ")
                    ));
                }
                _ => {}
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
            let assigned: Vec<(String, IpAddr)> = interfaces
                .into_iter()
                .map(|i| (i.name, i.addr.ip()))
                .collect();
            self.judge(&assigned)
        })
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

    fn host() -> Vec<(String, IpAddr)> {
        vec![
            ("lo".into(), "127.0.0.1".parse().unwrap()),
            ("lo".into(), "::1".parse().unwrap()),
            ("eth0".into(), "192.0.2.5".parse().unwrap()),
        ]
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
