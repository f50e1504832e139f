//! The step from service states to the set of routes that should be
//! announced, free of I/O. This is the only place that maps health to routes.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::health::{Hysteresis, ServiceState};
use crate::config::Config;

/// A service's state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub service: String,
    pub from: ServiceState,
    pub to: ServiceState,
}

/// Each service's health, and which services protect which route.
///
/// A route is desired only while every service protecting it is Up:
/// `announcer.routes` are protected by all services, a service's own
/// `routes` by that service (and by any other service listing them).
#[derive(Debug, Clone, Default)]
pub struct RouteBook {
    /// Where each service's health is kept in `health`.
    index: BTreeMap<String, usize>,
    health: Vec<Hysteresis>,
    /// `announcer.routes`: protected by every service.
    global: BTreeSet<IpNet>,
    /// A service's own routes, and which services (indices into `health`)
    /// list each of them. Indices, not names: `desired` walks every route
    /// on every change, and a name lookup per route cost ~1 ms at 10,000.
    own: BTreeMap<IpNet, Vec<usize>>,
}

impl RouteBook {
    pub fn new(config: &Config) -> RouteBook {
        let mut book = RouteBook::default();
        book.apply_config(config);
        book
    }

    /// Takes a new config. Services that keep their name keep their state,
    /// so routes whose protectors did not change are not touched.
    pub fn apply_config(&mut self, config: &Config) {
        let mut index = BTreeMap::new();
        let mut health = Vec::with_capacity(config.services.len());
        for service in &config.services {
            let mut kept = match self.index.get(&service.name) {
                Some(&at) => self.health[at].clone(),
                None => Hysteresis::new(service.rise, service.fall),
            };
            kept.retune(service.rise, service.fall);
            index.insert(service.name.clone(), health.len());
            health.push(kept);
        }
        self.index = index;
        self.health = health;

        // Kept apart from services' own routes: a global route would
        // otherwise carry every service (routes × services).
        self.global = config.routes.iter().copied().collect();
        let mut own: BTreeMap<IpNet, Vec<usize>> = BTreeMap::new();
        for service in &config.services {
            let at = self.index[&service.name];
            for route in &service.routes {
                let protectors = own.entry(*route).or_default();
                if !protectors.contains(&at) {
                    protectors.push(at);
                }
            }
        }
        self.own = own;
    }

    pub fn state(&self, service: &str) -> Option<ServiceState> {
        self.index.get(service).map(|&at| self.health[at].state())
    }

    /// Feeds a round's verdict for `service`; returns the transition, if any.
    pub fn observe(&mut self, service: &str, passed: bool) -> Option<Transition> {
        let health = &mut self.health[*self.index.get(service)?];
        let from = health.state();
        health.observe(passed).map(|to| Transition {
            service: service.to_string(),
            from,
            to,
        })
    }

    /// Takes `service` Down at once (see [`Hysteresis::force_down`]).
    pub fn force_down(&mut self, service: &str) -> Option<Transition> {
        let health = &mut self.health[*self.index.get(service)?];
        let from = health.state();
        health.force_down().map(|to| Transition {
            service: service.to_string(),
            from,
            to,
        })
    }

    /// The routes whose protecting services are all Up.
    pub fn desired(&self) -> BTreeSet<IpNet> {
        let up: Vec<bool> = self
            .health
            .iter()
            .map(|h| h.state() == ServiceState::Up)
            .collect();
        let all_up = !up.is_empty() && up.iter().all(|u| *u);
        let mut desired: BTreeSet<IpNet> = self
            .own
            .iter()
            .filter(|(route, services)| {
                services.iter().all(|&at| up[at]) && (all_up || !self.global.contains(route))
            })
            .map(|(route, _)| *route)
            .collect();
        if all_up {
            desired.extend(self.global.iter().copied());
        }
        desired
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{BackendKind, Format, load_str};

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
announcer: {{backend: exabgp, routes: [192.0.2.1/32]}}
services:
  - name: a
    check_interval: 1s
    routes: [198.51.100.1/32, 198.51.100.9/32]
    checks: [{{kind: assigned_address, spec: {{ipv4: 127.0.0.1}}}}]
  - name: b
    check_interval: 1s
    routes: ["2001:db8::1/128", 198.51.100.9/32]
    checks: [{{kind: assigned_address, spec: {{ipv4: 127.0.0.1}}}}]
{extra}"#
        );
        load_str(
            &text,
            Format::Yaml,
            Path::new("t.yaml"),
            Some(BackendKind::Exabgp),
        )
        .unwrap()
    }

    fn set(routes: &[&str]) -> BTreeSet<IpNet> {
        routes.iter().map(|r| r.parse().unwrap()).collect()
    }

    #[test]
    fn nothing_is_desired_before_verdicts() {
        let book = RouteBook::new(&config(""));
        assert!(book.desired().is_empty());
    }

    #[test]
    fn global_routes_need_every_service_up() {
        let mut book = RouteBook::new(&config(""));
        let t = book.observe("a", true).unwrap();
        assert_eq!((t.from, t.to), (ServiceState::Unknown, ServiceState::Up));
        assert_eq!(book.desired(), set(&["198.51.100.1/32"]));
        book.observe("b", true);
        assert_eq!(
            book.desired(),
            set(&[
                "192.0.2.1/32",
                "198.51.100.1/32",
                "198.51.100.9/32",
                "2001:db8::1/128"
            ])
        );
        book.observe("a", false);
        assert_eq!(book.desired(), set(&["2001:db8::1/128"]));
    }

    #[test]
    fn reload_keeps_state_of_unchanged_services() {
        let mut book = RouteBook::new(&config(""));
        book.observe("a", true);
        book.observe("b", true);
        let before = book.desired();
        book.apply_config(&config(""));
        assert_eq!(book.desired(), before);
        // a new service protects the global routes too: withdrawn until it is up
        let bigger = config(
            "  - name: c\n    check_interval: 1s\n    checks: [{kind: assigned_address, spec: {ipv4: 127.0.0.1}}]\n",
        );
        book.apply_config(&bigger);
        assert!(!book.desired().contains(&"192.0.2.1/32".parse().unwrap()));
        assert!(book.desired().contains(&"198.51.100.1/32".parse().unwrap()));
        book.observe("c", true);
        assert_eq!(book.desired(), before);
    }

    #[test]
    fn unknown_service_reports_are_ignored() {
        let mut book = RouteBook::new(&config(""));
        assert_eq!(book.observe("zzz", true), None);
    }
}
