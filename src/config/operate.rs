//! The operator-control part of the config: attribute profiles per state,
//! drains (time, maintenance files, graceful shutdown), the reload safety
//! valve and the control socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::model::{RawControl, RawMaxWithdraw, RawProfile, RawProfiles};
use super::resolve::Problems;
use crate::route::{Community, LargeCommunity, RouteAttributes, RouteClass};

/// The most `as_path_prepend` may ask for: more only makes paths absurd.
pub const MAX_PREPEND: u8 = 16;

/// The most communities (and large communities) a profile may hold: with
/// them every UPDATE still fits in BGP's 4,096 bytes with room for routes.
pub const MAX_COMMUNITIES: usize = 64;

/// The default `drain_time`.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(30);

/// One resolved attribute profile per announcing state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profiles {
    pub up: Arc<RouteAttributes>,
    pub degraded: Arc<RouteAttributes>,
    /// Always carries GRACEFUL_SHUTDOWN (RFC 8326).
    pub draining: Arc<RouteAttributes>,
}

impl Profiles {
    pub fn for_class(&self, class: RouteClass) -> &Arc<RouteAttributes> {
        match class {
            RouteClass::Up => &self.up,
            RouteClass::Degraded => &self.degraded,
            RouteClass::Draining => &self.draining,
        }
    }
}

/// `announcer.max_withdraw`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxWithdraw {
    Count(usize),
    /// A share (0.25 for "25%") of the routes announced before the reload.
    Fraction(f64),
}

impl MaxWithdraw {
    /// The most routes a reload may withdraw when `announced` are announced.
    pub fn limit(self, announced: usize) -> usize {
        match self {
            MaxWithdraw::Count(n) => n,
            MaxWithdraw::Fraction(f) => (announced as f64 * f).floor() as usize,
        }
    }
}

impl std::fmt::Display for MaxWithdraw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxWithdraw::Count(n) => write!(f, "{n}"),
            MaxWithdraw::Fraction(x) => write!(f, "{}%", x * 100.0),
        }
    }
}

/// The node-wide drain settings (`announcer.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct DrainConfig {
    pub graceful_shutdown: bool,
    /// While it exists, every service is drained.
    pub maintenance_file: Option<PathBuf>,
    pub max_withdraw: Option<MaxWithdraw>,
}

/// `control`: where the control socket listens and drains are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlConfig {
    /// `None`: no control socket.
    pub socket: Option<PathBuf>,
    pub socket_mode: u32,
    /// `None`: drains set over the socket last until the daemon stops.
    pub state_file: Option<PathBuf>,
}

/// The socket's default permissions: owner and group may drain.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

pub(super) fn resolve_control(
    raw: Option<RawControl>,
    problems: &mut Problems,
    env: &dyn Fn(&str) -> Option<String>,
) -> ControlConfig {
    let raw = raw.unwrap_or_default();
    // systemd's RuntimeDirectory= and StateDirectory= name where a unit's
    // files go; without them (a shell, a test) nothing is made up.
    let first_dir = |var: &str| {
        env(var)
            .and_then(|dirs| dirs.split(':').next().map(PathBuf::from))
            .filter(|d| !d.as_os_str().is_empty())
    };
    let socket = match raw.socket.as_deref() {
        Some("") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => first_dir("RUNTIME_DIRECTORY").map(|d| d.join("control.sock")),
    };
    let state_file = match raw.state_file.as_deref() {
        Some("") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => first_dir("STATE_DIRECTORY").map(|d| d.join("drains.json")),
    };
    let socket_mode = match raw.socket_mode.as_deref() {
        None => DEFAULT_SOCKET_MODE,
        Some(text) => match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 => mode,
            _ => {
                problems.add(
                    "control.socket_mode",
                    format!("expected octal permission bits such as \"0660\", found \"{text}\""),
                );
                DEFAULT_SOCKET_MODE
            }
        },
    };
    ControlConfig {
        socket,
        socket_mode,
        state_file,
    }
}

pub(super) fn resolve_max_withdraw(
    raw: Option<RawMaxWithdraw>,
    problems: &mut Problems,
) -> Option<MaxWithdraw> {
    let key = "announcer.max_withdraw";
    match raw? {
        RawMaxWithdraw::Count(n) => Some(MaxWithdraw::Count(n as usize)),
        RawMaxWithdraw::Text(text) => {
            let parsed = text
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
                .filter(|n| (0.0..=100.0).contains(n));
            match parsed {
                Some(percent) => Some(MaxWithdraw::Fraction(percent / 100.0)),
                None => {
                    problems.add(
                        key,
                        format!(
                            "expected a count of routes (10) or a percentage of this node's routes (\"25%\"), found \"{text}\""
                        ),
                    );
                    None
                }
            }
        }
    }
}

/// Resolves `service` profiles over the announcer's (`defaults`). Each
/// field of a state's profile comes from the first that sets it: the
/// service's profile for that state, the announcer's for that state, the
/// service's `up`, the announcer's `up`. The draining profile always adds
/// GRACEFUL_SHUTDOWN.
pub(super) fn resolve_profiles(
    service: Option<&RawProfiles>,
    service_path: &str,
    defaults: Option<&RawProfiles>,
    local_asn: Option<u32>,
    problems: &mut Problems,
) -> Profiles {
    let pick = |raw: Option<&RawProfiles>, class: RouteClass| -> Option<RawProfile> {
        let raw = raw?;
        match class {
            RouteClass::Up => raw.up.clone(),
            RouteClass::Degraded => raw.degraded.clone(),
            RouteClass::Draining => raw.draining.clone(),
        }
    };
    let build = |class: RouteClass, problems: &mut Problems| -> Arc<RouteAttributes> {
        // Most specific first, with the key path each came from.
        let mut layers: Vec<(String, RawProfile)> = Vec::new();
        let service_key = format!("{service_path}.attributes");
        if let Some(p) = pick(service, class) {
            layers.push((format!("{service_key}.{}", class.as_str()), p));
        }
        if let Some(p) = pick(defaults, class) {
            layers.push((format!("announcer.attributes.{}", class.as_str()), p));
        }
        if class != RouteClass::Up {
            if let Some(p) = pick(service, RouteClass::Up) {
                layers.push((format!("{service_key}.up"), p));
            }
            if let Some(p) = pick(defaults, RouteClass::Up) {
                layers.push(("announcer.attributes.up".to_string(), p));
            }
        }
        let mut attributes = RouteAttributes {
            med: layers.iter().find_map(|(_, l)| l.med),
            local_pref: layers.iter().find_map(|(_, l)| l.local_pref),
            ..RouteAttributes::default()
        };
        for (path, l) in &layers {
            for (key, n) in [
                ("communities", l.communities.as_ref().map_or(0, Vec::len)),
                (
                    "large_communities",
                    l.large_communities.as_ref().map_or(0, Vec::len),
                ),
            ] {
                if n > MAX_COMMUNITIES {
                    problems.add(
                        format!("{path}.{key}"),
                        format!("at most {MAX_COMMUNITIES} per profile, found {n}"),
                    );
                }
            }
        }
        if let Some((path, l)) = layers.iter().find(|(_, l)| l.communities.is_some()) {
            for (i, text) in l.communities.iter().flatten().enumerate() {
                match parse_community(text) {
                    Ok(c) => attributes.communities.push(c),
                    Err(e) => problems.add(format!("{path}.communities[{i}]"), e),
                }
            }
        }
        if let Some((path, l)) = layers.iter().find(|(_, l)| l.large_communities.is_some()) {
            for (i, text) in l.large_communities.iter().flatten().enumerate() {
                match parse_large_community(text) {
                    Ok(c) => attributes.large_communities.push(c),
                    Err(e) => problems.add(format!("{path}.large_communities[{i}]"), e),
                }
            }
        }
        if let Some((path, l)) = layers.iter().find(|(_, l)| l.as_path_prepend.is_some()) {
            let n = l.as_path_prepend.unwrap_or(0);
            if n > MAX_PREPEND {
                problems.add(
                    format!("{path}.as_path_prepend"),
                    format!("must be at most {MAX_PREPEND}, found {n}"),
                );
            } else if n > 0 && local_asn.is_none() {
                problems.add(
                    format!("{path}.as_path_prepend"),
                    "needs announcer.local_asn: the AS number to prepend",
                );
            }
            attributes.prepend = n.min(MAX_PREPEND);
        }
        if class == RouteClass::Draining {
            attributes.communities.push(Community::GRACEFUL_SHUTDOWN);
        }
        attributes.communities.sort_unstable();
        attributes.communities.dedup();
        attributes.large_communities.sort_unstable();
        attributes.large_communities.dedup();
        Arc::new(attributes)
    };
    Profiles {
        up: build(RouteClass::Up, problems),
        degraded: build(RouteClass::Degraded, problems),
        draining: build(RouteClass::Draining, problems),
    }
}

/// Well-known communities by name (RFC 1997, 3765, 7999, 8326).
const WELL_KNOWN: [(&str, u32); 6] = [
    ("graceful_shutdown", 0xFFFF_0000),
    ("blackhole", 0xFFFF_029A),
    ("no_export", 0xFFFF_FF01),
    ("no_advertise", 0xFFFF_FF02),
    ("no_export_subconfed", 0xFFFF_FF03),
    ("no_peer", 0xFFFF_FF04),
];

/// `65000:100` or a well-known name such as `no_export`.
pub fn parse_community(text: &str) -> Result<Community, String> {
    if let Some((_, value)) = WELL_KNOWN.iter().find(|(name, _)| *name == text) {
        return Ok(Community(*value));
    }
    let parts: Vec<&str> = text.split(':').collect();
    if let [high, low] = parts[..]
        && let (Ok(high), Ok(low)) = (high.parse::<u16>(), low.parse::<u16>())
    {
        return Ok(Community::new(high, low));
    }
    let names: Vec<&str> = WELL_KNOWN.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "expected a community ASN:VALUE with both parts 0 to 65535 (\"65000:100\") or one of {}, found \"{text}\"",
        names.join(", ")
    ))
}

/// `65000:1:2`, each part 0 to 4294967295.
pub fn parse_large_community(text: &str) -> Result<LargeCommunity, String> {
    let parts: Vec<Result<u32, _>> = text.split(':').map(str::parse::<u32>).collect();
    if let [Ok(a), Ok(b), Ok(c)] = parts[..] {
        return Ok(LargeCommunity(a, b, c));
    }
    Err(format!(
        "expected a large community GLOBAL:LOCAL1:LOCAL2, each 0 to 4294967295 (\"65000:1:2\"), found \"{text}\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities_parse_by_number_and_name() {
        assert_eq!(parse_community("65000:100"), Ok(Community::new(65000, 100)));
        assert_eq!(
            parse_community("graceful_shutdown"),
            Ok(Community::GRACEFUL_SHUTDOWN)
        );
        assert!(parse_community("65536:1").unwrap_err().contains("65536:1"));
        assert!(parse_community("1:2:3").is_err());
        assert_eq!(
            parse_large_community("4200000000:1:2"),
            Ok(LargeCommunity(4_200_000_000, 1, 2))
        );
        assert!(parse_large_community("1:2").is_err());
    }

    #[test]
    fn profiles_fall_back_field_by_field_and_draining_adds_gshut() {
        let defaults = RawProfiles {
            up: Some(RawProfile {
                med: Some(10),
                communities: Some(vec!["65000:1".into()]),
                ..RawProfile::default()
            }),
            degraded: Some(RawProfile {
                med: Some(100),
                ..RawProfile::default()
            }),
            draining: None,
        };
        let service = RawProfiles {
            degraded: Some(RawProfile {
                as_path_prepend: Some(2),
                ..RawProfile::default()
            }),
            ..RawProfiles::default()
        };
        let mut problems = Problems::default();
        let p = resolve_profiles(
            Some(&service),
            "services[0]",
            Some(&defaults),
            Some(65001),
            &mut problems,
        );
        assert!(problems.is_empty());
        assert_eq!(p.up.med, Some(10));
        assert_eq!((p.degraded.med, p.degraded.prepend), (Some(100), 2));
        assert_eq!(p.degraded.communities, [Community::new(65000, 1)]);
        assert_eq!(p.draining.med, Some(10));
        assert_eq!(
            p.draining.communities,
            [Community::new(65000, 1), Community::GRACEFUL_SHUTDOWN]
        );
        // Without a local AS there is nothing to prepend.
        let mut problems = Problems::default();
        resolve_profiles(Some(&service), "services[0]", None, None, &mut problems);
        assert!(!problems.is_empty());
    }

    #[test]
    fn max_withdraw_takes_counts_and_shares() {
        let mut problems = Problems::default();
        let m = resolve_max_withdraw(Some(RawMaxWithdraw::Text("25%".into())), &mut problems);
        assert_eq!(m, Some(MaxWithdraw::Fraction(0.25)));
        assert_eq!(m.unwrap().limit(10), 2);
        assert_eq!(MaxWithdraw::Count(3).limit(100), 3);
        resolve_max_withdraw(Some(RawMaxWithdraw::Text("lots".into())), &mut problems);
        assert!(!problems.is_empty());
    }

    #[test]
    fn control_paths_come_from_systemd_directories() {
        let mut problems = Problems::default();
        let env = |var: &str| match var {
            "RUNTIME_DIRECTORY" => Some("/run/anycastd".to_string()),
            "STATE_DIRECTORY" => Some("/var/lib/anycastd:/var/lib/other".to_string()),
            _ => None,
        };
        let c = resolve_control(None, &mut problems, &env);
        assert_eq!(c.socket, Some(PathBuf::from("/run/anycastd/control.sock")));
        assert_eq!(
            c.state_file,
            Some(PathBuf::from("/var/lib/anycastd/drains.json"))
        );
        let none = resolve_control(None, &mut problems, &|_| None);
        assert_eq!((none.socket, none.state_file), (None, None));
        assert!(problems.is_empty());
    }
}
