//! Health decisions, free of I/O: how a round of check results becomes a
//! service verdict (the four original strategies), and how verdicts become a
//! service state through rise/fall hysteresis.

use crate::config::Strategy;

/// What the engine believes about a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// No decision yet (startup, or rise/fall not yet reached from startup).
    Unknown,
    Up,
    Down,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Unknown => "unknown",
            ServiceState::Up => "up",
            ServiceState::Down => "down",
        }
    }
}

/// One check's result within a round, as the strategy sees it.
#[derive(Debug, Clone, Copy)]
pub struct CheckVerdict<'a> {
    pub group: &'a str,
    pub passed: bool,
}

/// Whether a round passes under `strategy` (the original's "is down?" inverted).
pub fn round_passes(strategy: Strategy, results: &[CheckVerdict<'_>]) -> bool {
    let total = results.len();
    let failed = results.iter().filter(|r| !r.passed).count();
    match strategy {
        Strategy::AtLeastOne => failed == 0,
        Strategy::All => total == 0 || failed < total,
        Strategy::AllInGroup => {
            let mut groups: Vec<&str> = results.iter().map(|r| r.group).collect();
            groups.sort_unstable();
            groups.dedup();
            groups
                .iter()
                .all(|g| results.iter().any(|r| r.group == *g && r.passed))
        }
        Strategy::AtLeastNPercentage(n) => total == 0 || (failed as f64 / total as f64) <= n,
    }
}

/// Rise/fall hysteresis: `rise` passing rounds in a row turn a service Up,
/// `fall` failing rounds in a row turn it Down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    state: ServiceState,
    /// Consecutive rounds that disagree with the current state.
    streak: u32,
    /// Whether the streak counts passes (`true`) or failures.
    streak_passing: bool,
}

impl Hysteresis {
    pub fn new(rise: u32, fall: u32) -> Hysteresis {
        Hysteresis {
            rise: rise.max(1),
            fall: fall.max(1),
            state: ServiceState::Unknown,
            streak: 0,
            streak_passing: false,
        }
    }

    pub fn state(&self) -> ServiceState {
        self.state
    }

    /// Keeps the current state but takes new thresholds (config reload).
    pub fn retune(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Down now, whatever the streak: the service can no longer be vouched
    /// for (its verdicts stopped). Returns the new state if it changed.
    pub fn force_down(&mut self) -> Option<ServiceState> {
        self.streak = 0;
        if self.state == ServiceState::Down {
            return None;
        }
        self.state = ServiceState::Down;
        Some(ServiceState::Down)
    }

    /// Feeds one round's verdict; returns the new state if it changed.
    pub fn observe(&mut self, passed: bool) -> Option<ServiceState> {
        let agrees = matches!(
            (self.state, passed),
            (ServiceState::Up, true) | (ServiceState::Down, false)
        );
        if agrees {
            self.streak = 0;
            return None;
        }
        if self.streak_passing != passed {
            self.streak_passing = passed;
            self.streak = 0;
        }
        self.streak += 1;
        let needed = if passed { self.rise } else { self.fall };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.state = if passed {
            ServiceState::Up
        } else {
            ServiceState::Down
        };
        Some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(group: &str, passed: bool) -> CheckVerdict<'_> {
        CheckVerdict { group, passed }
    }

    #[test]
    fn strategies_match_the_original() {
        let mixed = [v("a", true), v("a", false), v("b", false)];
        assert!(!round_passes(Strategy::AtLeastOne, &mixed));
        assert!(round_passes(
            Strategy::AtLeastOne,
            &[v("", true), v("", true)]
        ));
        assert!(round_passes(Strategy::All, &mixed));
        assert!(!round_passes(Strategy::All, &[v("", false), v("", false)]));
        // group b has no passing check
        assert!(!round_passes(Strategy::AllInGroup, &mixed));
        assert!(round_passes(
            Strategy::AllInGroup,
            &[v("a", true), v("a", false), v("b", true)]
        ));
        // 2 of 3 failed = 0.67: down when failed/total > n
        assert!(!round_passes(Strategy::AtLeastNPercentage(0.5), &mixed));
        assert!(round_passes(Strategy::AtLeastNPercentage(0.7), &mixed));
        let half = [v("", true), v("", false)];
        assert!(round_passes(Strategy::AtLeastNPercentage(0.5), &half));
    }

    #[test]
    fn one_verdict_flips_by_default() {
        let mut h = Hysteresis::new(1, 1);
        assert_eq!(h.state(), ServiceState::Unknown);
        assert_eq!(h.observe(true), Some(ServiceState::Up));
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), Some(ServiceState::Down));
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), Some(ServiceState::Up));
    }

    #[test]
    fn rise_and_fall_need_consecutive_rounds() {
        let mut h = Hysteresis::new(3, 2);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(ServiceState::Up));
        assert_eq!(h.observe(false), None);
        // a pass in between resets the fall count
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), Some(ServiceState::Down));
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(ServiceState::Up));
    }

    #[test]
    fn startup_failures_count_toward_down() {
        let mut h = Hysteresis::new(2, 2);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.state(), ServiceState::Unknown);
        assert_eq!(h.observe(false), Some(ServiceState::Down));
    }

    #[test]
    fn force_down_skips_fall_and_needs_rise_to_come_back() {
        let mut h = Hysteresis::new(2, 3);
        h.observe(true);
        assert_eq!(h.observe(true), Some(ServiceState::Up));
        assert_eq!(h.force_down(), Some(ServiceState::Down));
        assert_eq!(h.force_down(), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(ServiceState::Up));
    }

    #[test]
    fn retune_keeps_state() {
        let mut h = Hysteresis::new(1, 1);
        h.observe(true);
        h.retune(5, 5);
        assert_eq!(h.state(), ServiceState::Up);
        assert_eq!(h.observe(false), None);
    }
}
