//! Health decisions, free of I/O: how a round of check results becomes a
//! service verdict (the four original strategies, plus Degraded), and how
//! verdicts become a service's health through rise/fall hysteresis.

use crate::config::Strategy;

/// What the engine believes about a service: its health (Unknown, Up,
/// Degraded, Down, from [`Hysteresis`]) or, when an operator drains it,
/// Draining then Drained (decided by `engine::core`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// No decision yet (startup, or rise/fall not yet reached from startup).
    Unknown,
    Up,
    /// Serving, but others should be preferred: announced with the
    /// degraded profile.
    Degraded,
    /// Drained by the operator while serving: announced with
    /// GRACEFUL_SHUTDOWN and the draining profile until `drain_time` ends.
    Draining,
    /// Drained, and its routes withdrawn (whatever its health).
    Drained,
    Down,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Unknown => "unknown",
            ServiceState::Up => "up",
            ServiceState::Degraded => "degraded",
            ServiceState::Draining => "draining",
            ServiceState::Drained => "drained",
            ServiceState::Down => "down",
        }
    }

    /// Whether routes are announced in this state.
    pub fn announces(self) -> bool {
        matches!(
            self,
            ServiceState::Up | ServiceState::Degraded | ServiceState::Draining
        )
    }

    /// Whether the service itself serves (health Up or Degraded), whatever
    /// the operator decided.
    pub fn serving(self) -> bool {
        matches!(self, ServiceState::Up | ServiceState::Degraded)
    }
}

/// One round's verdict, worst first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Failing,
    Degraded,
    Passing,
}

impl Level {
    fn state(self) -> ServiceState {
        match self {
            Level::Failing => ServiceState::Down,
            Level::Degraded => ServiceState::Degraded,
            Level::Passing => ServiceState::Up,
        }
    }

    fn of(state: ServiceState) -> Option<Level> {
        match state {
            ServiceState::Up => Some(Level::Passing),
            ServiceState::Degraded => Some(Level::Degraded),
            ServiceState::Down => Some(Level::Failing),
            _ => None,
        }
    }
}

/// One check's result within a round, as the strategy sees it.
#[derive(Debug, Clone, Copy)]
pub struct CheckVerdict<'a> {
    pub group: &'a str,
    pub passed: bool,
    /// A failure of this check degrades the service instead of failing it.
    pub degrades: bool,
}

/// A round's verdict under `strategy`.
///
/// Checks marked `degrades` are set aside: any of them failing makes the
/// round Degraded at best. The others go through the strategy (the
/// original's "is down?" inverted): Failing when the strategy says down;
/// Degraded when it says up although some of them failed (possible with
/// `all`, `all_in_group` and `at_least_n_percentage`; never with
/// `at_least_one`, where any failure is down); Passing otherwise.
pub fn round_verdict(strategy: Strategy, results: &[CheckVerdict<'_>]) -> Level {
    let degrading_failed = results.iter().any(|r| r.degrades && !r.passed);
    let judged: Vec<&CheckVerdict<'_>> = results.iter().filter(|r| !r.degrades).collect();
    let total = judged.len();
    let failed = judged.iter().filter(|r| !r.passed).count();
    let up = match strategy {
        Strategy::AtLeastOne => failed == 0,
        Strategy::All => total == 0 || failed < total,
        Strategy::AllInGroup => {
            let mut groups: Vec<&str> = judged.iter().map(|r| r.group).collect();
            groups.sort_unstable();
            groups.dedup();
            groups
                .iter()
                .all(|g| judged.iter().any(|r| r.group == *g && r.passed))
        }
        Strategy::AtLeastNPercentage(n) => total == 0 || (failed as f64 / total as f64) <= n,
    };
    if !up {
        Level::Failing
    } else if failed > 0 || degrading_failed {
        Level::Degraded
    } else {
        Level::Passing
    }
}

/// Whether a round passes (is not Failing) under `strategy`.
pub fn round_passes(strategy: Strategy, results: &[CheckVerdict<'_>]) -> bool {
    round_verdict(strategy, results) != Level::Failing
}

/// Rise or fall under way: `rounds` of `needed` toward `toward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    pub rounds: u32,
    pub needed: u32,
    pub toward: ServiceState,
}

/// Rise/fall hysteresis over three levels: `rise` rounds in a row better
/// than the current state move it up, `fall` rounds in a row worse move it
/// down. The new state is the one every round of the streak supports (the
/// best of a falling streak, the worst of a rising one), so Up with
/// `fall: 2` and rounds Degraded, Failing becomes Degraded, not Down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    state: ServiceState,
    /// Consecutive rounds that disagree with the current state.
    streak: u32,
    /// Whether the streak is of better rounds (`true`) or worse ones.
    streak_better: bool,
    /// What every round of the streak supports.
    streak_bound: Level,
}

impl Hysteresis {
    pub fn new(rise: u32, fall: u32) -> Hysteresis {
        Hysteresis {
            rise: rise.max(1),
            fall: fall.max(1),
            state: ServiceState::Unknown,
            streak: 0,
            streak_better: false,
            streak_bound: Level::Failing,
        }
    }

    /// Unknown, Up, Degraded or Down.
    pub fn state(&self) -> ServiceState {
        self.state
    }

    /// Whether rounds disagree with the state but have not yet reached
    /// rise or fall (the service is between states).
    pub fn in_progress(&self) -> bool {
        self.streak > 0
    }

    /// Where rise or fall stands while a streak is in progress.
    pub fn progress(&self) -> Option<Progress> {
        (self.streak > 0).then(|| Progress {
            rounds: self.streak,
            needed: if self.streak_better {
                self.rise
            } else {
                self.fall
            },
            toward: self.streak_bound.state(),
        })
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

    /// Feeds one round's verdict (passed or not); returns the new state if
    /// it changed.
    pub fn observe(&mut self, passed: bool) -> Option<ServiceState> {
        self.observe_level(if passed {
            Level::Passing
        } else {
            Level::Failing
        })
    }

    /// Feeds one round's verdict; returns the new state if it changed.
    pub fn observe_level(&mut self, level: Level) -> Option<ServiceState> {
        let better = match Level::of(self.state) {
            Some(current) if current == level => {
                self.streak = 0;
                return None;
            }
            Some(current) => level > current,
            // From Unknown, serving rounds count toward rise.
            None => level > Level::Failing,
        };
        if self.streak == 0 || self.streak_better != better {
            self.streak_better = better;
            self.streak = 0;
            self.streak_bound = level;
        } else if better {
            self.streak_bound = self.streak_bound.min(level);
        } else {
            self.streak_bound = self.streak_bound.max(level);
        }
        self.streak += 1;
        let needed = if better { self.rise } else { self.fall };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.state = self.streak_bound.state();
        Some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(group: &str, passed: bool) -> CheckVerdict<'_> {
        CheckVerdict {
            group,
            passed,
            degrades: false,
        }
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
    fn strategies_that_tolerate_failures_report_degraded() {
        let mixed = [v("a", true), v("a", false), v("b", true)];
        assert_eq!(round_verdict(Strategy::AtLeastOne, &mixed), Level::Failing);
        assert_eq!(round_verdict(Strategy::All, &mixed), Level::Degraded);
        assert_eq!(round_verdict(Strategy::AllInGroup, &mixed), Level::Degraded);
        assert_eq!(
            round_verdict(Strategy::AtLeastNPercentage(0.5), &mixed),
            Level::Degraded
        );
        assert_eq!(
            round_verdict(Strategy::AtLeastNPercentage(0.2), &mixed),
            Level::Failing
        );
        let clean = [v("a", true), v("b", true)];
        assert_eq!(round_verdict(Strategy::All, &clean), Level::Passing);
    }

    #[test]
    fn a_degrading_check_degrades_instead_of_failing() {
        let soft = CheckVerdict {
            group: "",
            passed: false,
            degrades: true,
        };
        let results = [v("", true), soft];
        assert_eq!(
            round_verdict(Strategy::AtLeastOne, &results),
            Level::Degraded
        );
        // ...but never lifts a round the other checks fail.
        assert_eq!(
            round_verdict(Strategy::AtLeastOne, &[v("", false), soft]),
            Level::Failing
        );
        // Only degrading checks: the strategy has nothing to fail.
        assert_eq!(
            round_verdict(Strategy::AtLeastOne, &[soft]),
            Level::Degraded
        );
    }

    #[test]
    fn hysteresis_moves_between_three_levels() {
        let mut h = Hysteresis::new(2, 2);
        assert_eq!(h.observe_level(Level::Passing), None);
        assert!(h.in_progress());
        assert_eq!(h.observe_level(Level::Passing), Some(ServiceState::Up));
        assert!(!h.in_progress());
        // A falling streak lands on the best level it saw.
        assert_eq!(h.observe_level(Level::Degraded), None);
        assert_eq!(
            h.observe_level(Level::Failing),
            Some(ServiceState::Degraded)
        );
        assert_eq!(h.observe_level(Level::Failing), None);
        assert_eq!(h.observe_level(Level::Failing), Some(ServiceState::Down));
        // A rising streak lands on the worst level it saw.
        assert_eq!(h.observe_level(Level::Passing), None);
        assert_eq!(
            h.observe_level(Level::Degraded),
            Some(ServiceState::Degraded)
        );
        // A round agreeing with the state resets the streak.
        assert_eq!(h.observe_level(Level::Passing), None);
        assert_eq!(h.observe_level(Level::Degraded), None);
        assert_eq!(h.observe_level(Level::Passing), None);
        assert_eq!(h.observe_level(Level::Passing), Some(ServiceState::Up));
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
