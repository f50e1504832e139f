//! The step from service states to the routes that should be announced and
//! how, free of I/O. This is the only place that maps states to routes.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::health::{Hysteresis, Level, ServiceState};
use crate::config::{Config, Profiles};
use crate::route::{Announcement, RouteClass, RouteSet};

/// A service's health changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub service: String,
    pub from: ServiceState,
    pub to: ServiceState,
}

/// Each service's health and state, and which services protect which route.
///
/// A route is desired only while every service protecting it announces
/// (Up, Degraded or Draining): `announcer.routes` are protected by all
/// services, a service's own `routes` by that service (and by any other
/// service listing them). It is announced as its worst protector's state
/// asks (Up, then Degraded, then Draining), with that service's profile;
/// `announcer.routes` with the announcer's.
#[derive(Debug, Clone, Default)]
pub struct RouteBook {
    /// Where each service's health is kept in `health`.
    index: BTreeMap<String, usize>,
    health: Vec<Hysteresis>,
    /// What each service's routes do now, as the core decided from health,
    /// drains and delays.
    states: Vec<ServiceState>,
    profiles: Vec<Profiles>,
    /// The announcer's profiles, for `announcer.routes`.
    global_profiles: Profiles,
    /// `announcer.routes`: protected by every service.
    global: BTreeSet<IpNet>,
    /// A service's own routes, and which services (indices into `health`)
    /// list each of them. Indices, not names: `desired` walks every route
    /// on every change, and a name lookup per route cost ~1 ms at 10,000.
    own: BTreeMap<IpNet, Vec<usize>>,
}

/// How a state announces, worst last; `None` when it does not.
fn class_of(state: ServiceState) -> Option<RouteClass> {
    match state {
        ServiceState::Up => Some(RouteClass::Up),
        ServiceState::Degraded => Some(RouteClass::Degraded),
        ServiceState::Draining => Some(RouteClass::Draining),
        _ => None,
    }
}

impl RouteBook {
    pub fn new(config: &Config) -> RouteBook {
        let mut book = RouteBook::default();
        book.apply_config(config);
        book
    }

    /// Takes a new config. Services that keep their name keep their health
    /// and state, so routes whose protectors did not change are not touched.
    pub fn apply_config(&mut self, config: &Config) {
        let mut index = BTreeMap::new();
        let mut health = Vec::with_capacity(config.services.len());
        let mut states = Vec::with_capacity(config.services.len());
        for service in &config.services {
            let (mut kept, state) = match self.index.get(&service.name) {
                Some(&at) => (self.health[at].clone(), self.states[at]),
                None => (
                    Hysteresis::new(service.rise, service.fall),
                    ServiceState::Unknown,
                ),
            };
            kept.retune(service.rise, service.fall);
            index.insert(service.name.clone(), health.len());
            health.push(kept);
            states.push(state);
        }
        self.index = index;
        self.health = health;
        self.states = states;
        self.profiles = config
            .services
            .iter()
            .map(|s| s.attributes.clone())
            .collect();
        self.global_profiles = config.attributes.clone();

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

    /// The service's health (Unknown, Up, Degraded or Down).
    pub fn health(&self, service: &str) -> Option<ServiceState> {
        self.index.get(service).map(|&at| self.health[at].state())
    }

    /// The state the core last set for the service.
    pub fn state(&self, service: &str) -> Option<ServiceState> {
        self.index.get(service).map(|&at| self.states[at])
    }

    /// Where the service's rise or fall stands, if one is under way.
    pub fn progress(&self, service: &str) -> Option<super::health::Progress> {
        self.index
            .get(service)
            .and_then(|&at| self.health[at].progress())
    }

    /// Whether the service is between states (rise or fall in progress).
    pub fn in_progress(&self, service: &str) -> bool {
        self.index
            .get(service)
            .is_some_and(|&at| self.health[at].in_progress())
    }

    /// Feeds a round's verdict for `service`; returns the health
    /// transition, if any.
    pub fn observe(&mut self, service: &str, level: Level) -> Option<Transition> {
        let health = &mut self.health[*self.index.get(service)?];
        let from = health.state();
        health.observe_level(level).map(|to| Transition {
            service: service.to_string(),
            from,
            to,
        })
    }

    /// Takes `service`'s health Down at once (see [`Hysteresis::force_down`]).
    pub fn force_down(&mut self, service: &str) -> Option<Transition> {
        let health = &mut self.health[*self.index.get(service)?];
        let from = health.state();
        health.force_down().map(|to| Transition {
            service: service.to_string(),
            from,
            to,
        })
    }

    /// Sets what the service's routes do now.
    pub fn set_state(&mut self, service: &str, state: ServiceState) {
        if let Some(&at) = self.index.get(service) {
            self.states[at] = state;
        }
    }

    /// The routes whose protecting services all announce, each with its
    /// worst protector's class and profile.
    pub fn desired(&self) -> RouteSet {
        let classes: Vec<Option<RouteClass>> = self.states.iter().map(|s| class_of(*s)).collect();
        // announcer.routes: the worst of every service; none if any is out.
        let global_class = if classes.is_empty() {
            None
        } else {
            classes
                .iter()
                .try_fold(RouteClass::Up, |worst, c| c.map(|c| worst.max(c)))
        };
        let global_announcement = |class: RouteClass| Announcement {
            class,
            attributes: self.global_profiles.for_class(class).clone(),
        };
        let mut desired = RouteSet::new();
        for (route, services) in &self.own {
            let mut worst: Option<(RouteClass, usize)> = None;
            let mut out = false;
            for &at in services {
                match classes[at] {
                    None => {
                        out = true;
                        break;
                    }
                    Some(class) => {
                        if worst.is_none_or(|(w, _)| class > w) {
                            worst = Some((class, at));
                        }
                    }
                }
            }
            let Some((class, at)) = worst.filter(|_| !out) else {
                continue;
            };
            let announcement = if self.global.contains(route) {
                match global_class {
                    None => continue,
                    Some(g) if g > class => global_announcement(g),
                    Some(_) => Announcement {
                        class,
                        attributes: self.profiles[at].for_class(class).clone(),
                    },
                }
            } else {
                Announcement {
                    class,
                    attributes: self.profiles[at].for_class(class).clone(),
                }
            };
            desired.insert(*route, announcement);
        }
        if let Some(class) = global_class {
            for route in &self.global {
                desired
                    .entry(*route)
                    .or_insert_with(|| global_announcement(class));
            }
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

    /// The desired prefixes, as the core would set states from health.
    fn desired(book: &mut RouteBook) -> BTreeSet<IpNet> {
        for name in ["a", "b", "c"] {
            if let Some(health) = book.health(name) {
                book.set_state(name, health);
            }
        }
        book.desired().into_keys().collect()
    }

    fn pass(book: &mut RouteBook, service: &str, passed: bool) -> Option<Transition> {
        book.observe(
            service,
            if passed {
                Level::Passing
            } else {
                Level::Failing
            },
        )
    }

    #[test]
    fn nothing_is_desired_before_verdicts() {
        let mut book = RouteBook::new(&config(""));
        assert!(desired(&mut book).is_empty());
    }

    #[test]
    fn global_routes_need_every_service_up() {
        let mut book = RouteBook::new(&config(""));
        let t = pass(&mut book, "a", true).unwrap();
        assert_eq!((t.from, t.to), (ServiceState::Unknown, ServiceState::Up));
        assert_eq!(desired(&mut book), set(&["198.51.100.1/32"]));
        pass(&mut book, "b", true);
        assert_eq!(
            desired(&mut book),
            set(&[
                "192.0.2.1/32",
                "198.51.100.1/32",
                "198.51.100.9/32",
                "2001:db8::1/128"
            ])
        );
        pass(&mut book, "a", false);
        assert_eq!(desired(&mut book), set(&["2001:db8::1/128"]));
    }

    #[test]
    fn reload_keeps_state_of_unchanged_services() {
        let mut book = RouteBook::new(&config(""));
        pass(&mut book, "a", true);
        pass(&mut book, "b", true);
        let before = desired(&mut book);
        book.apply_config(&config(""));
        assert_eq!(desired(&mut book), before);
        // a new service protects the global routes too: withdrawn until it is up
        let bigger = config(
            "  - name: c\n    check_interval: 1s\n    checks: [{kind: assigned_address, spec: {ipv4: 127.0.0.1}}]\n",
        );
        book.apply_config(&bigger);
        assert!(!desired(&mut book).contains(&"192.0.2.1/32".parse().unwrap()));
        assert!(desired(&mut book).contains(&"198.51.100.1/32".parse().unwrap()));
        pass(&mut book, "c", true);
        assert_eq!(desired(&mut book), before);
    }

    #[test]
    fn routes_take_their_worst_protectors_class() {
        let mut book = RouteBook::new(&config(""));
        pass(&mut book, "a", true);
        pass(&mut book, "b", true);
        book.set_state("a", ServiceState::Up);
        book.set_state("b", ServiceState::Draining);
        let routes = book.desired();
        let class = |r: &str| routes[&r.parse::<IpNet>().unwrap()].class;
        assert_eq!(class("198.51.100.1/32"), RouteClass::Up);
        // Shared by a and b: b drains it.
        assert_eq!(class("198.51.100.9/32"), RouteClass::Draining);
        assert_eq!(class("2001:db8::1/128"), RouteClass::Draining);
        // announcer.routes: the worst of all.
        assert_eq!(class("192.0.2.1/32"), RouteClass::Draining);
        assert!(
            routes[&"192.0.2.1/32".parse::<IpNet>().unwrap()]
                .attributes
                .communities
                .contains(&crate::route::Community::GRACEFUL_SHUTDOWN)
        );
        book.set_state("b", ServiceState::Degraded);
        assert_eq!(
            book.desired()[&"192.0.2.1/32".parse::<IpNet>().unwrap()].class,
            RouteClass::Degraded
        );
        book.set_state("b", ServiceState::Drained);
        let left: BTreeSet<IpNet> = book.desired().into_keys().collect();
        assert_eq!(left, set(&["198.51.100.1/32"]));
    }

    #[test]
    fn unknown_service_reports_are_ignored() {
        let mut book = RouteBook::new(&config(""));
        assert_eq!(pass(&mut book, "zzz", true), None);
    }
}
