use super::*;
use crate::status::{Change, CheckStatus, History, RiseFall, ServiceStatus, StatusReport};

fn check(name: &str, verdict: Verdict, reason: &str, rounds: &[(bool, u64)]) -> CheckStatus {
    let mut history = History::default();
    for (passed, us) in rounds {
        history.push(*passed, Duration::from_micros(*us));
    }
    CheckStatus {
        name: name.into(),
        verdict,
        reason: reason.into(),
        duration_ms: Some(1.5),
        history,
    }
}

fn service(name: &str, state: State, checks: Vec<CheckStatus>) -> ServiceStatus {
    ServiceStatus {
        name: name.into(),
        state,
        reason: String::new(),
        drained_by: Vec::new(),
        draining_left_ms: None,
        announce_in_ms: None,
        rounds: 3,
        since_ms: Some(1_796_000_000_000),
        rise_fall: None,
        checks,
        deadlines: (None, None),
    }
}

#[test]
fn escape_covers_markup_and_both_quotes() {
    let mut out = String::new();
    escape(&mut out, r#"<script>alert("x" & 'y')</script>"#);
    assert_eq!(
        out,
        "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
    );
    let mut plain = String::new();
    escape(&mut plain, "dns · ünïcode");
    assert_eq!(plain, "dns · ünïcode");
}

#[test]
fn utc_formats_known_instants() {
    assert_eq!(utc(0), "1970-01-01 00:00:00");
    assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    assert_eq!(utc(1_796_562_071_900), "2026-12-06 13:01:11");
}

/// Names and reasons from the config or the network are text, never
/// markup: there is no script element, no event handler, and the names
/// read back escaped.
#[test]
fn hostile_names_and_reasons_are_shown_as_text() {
    let mut report = StatusReport::default();
    let mut evil = service(
        "<script>alert(1)</script>",
        State::Down,
        vec![check(
            "<img src=x onerror=alert(2)>",
            Verdict::Fail,
            "got \"<b>503</b>\" from 'x'",
            &[(false, 10)],
        )],
    );
    evil.reason = "<iframe src=//evil>".into();
    evil.drained_by = vec!["cli\"><script>".into()];
    report.services.push(evil);
    report.changes.push_front(Change {
        at_ms: 1_796_000_000_000,
        service: "<script>x</script>".into(),
        from: State::Up,
        to: State::Down,
        reason: "<svg onload=alert(3)>".into(),
    });
    let page = render(&report, 1_796_000_100_000);
    let lower = page.to_lowercase();
    assert!(!lower.contains("<script"), "{page}");
    assert!(!lower.contains("<img"), "{page}");
    assert!(!lower.contains("<iframe"), "{page}");
    assert!(!lower.contains("<svg onload"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(page.contains("got &quot;&lt;b&gt;503&lt;/b&gt;&quot; from &#39;x&#39;"));
}

#[test]
fn worst_services_come_first_and_the_summary_counts_them() {
    let mut report = StatusReport::default();
    for (name, state) in [
        ("a-up", State::Up),
        ("b-down", State::Down),
        ("c-degraded", State::Degraded),
        ("d-down", State::Down),
    ] {
        report.services.push(service(name, state, Vec::new()));
    }
    let page = render(&report, 1_796_000_100_000);
    let at = |name: &str| page.find(&format!(">{name}<")).unwrap();
    assert!(
        at("b-down") < at("d-down"),
        "configuration order within a state"
    );
    assert!(at("d-down") < at("c-degraded") && at("c-degraded") < at("a-up"));
    assert!(page.contains("<title>2 down · anycastd: 4 services</title>"));
    assert!(page.contains("<span class=\"b down\">down</span> 2</span>"));
    // "for 1m40s": since when, against the time of rendering.
    assert!(page.contains("for 1m40s"), "{page}");
}

#[test]
fn history_draws_passes_by_duration_and_failures_full_height() {
    let mut report = StatusReport::default();
    report.services.push(service(
        "web",
        State::Up,
        vec![check(
            "http",
            Verdict::Pass,
            "",
            &[(true, 1000), (false, 50), (true, 2000)],
        )],
    ));
    let page = render(&report, 1_796_000_100_000);
    // Right-aligned in 200 px: rounds at x = 194, 196, 198; passes by
    // duration (half the slowest: 11 of 20 px), the failure full height.
    assert!(
        page.contains("d=\"M194 20v-11h2v11h2v-20h2v20z\""),
        "green skyline: {page}"
    );
    assert!(
        page.contains("d=\"M194 20h2v-20h2v20h2z\""),
        "red skyline: {page}"
    );
    assert!(page.contains("<title>last 3 rounds: 1 failed, slowest 2ms</title>"));
}

#[test]
fn a_history_keeps_the_last_hundred_rounds_in_four_bytes_each() {
    let mut history = History::default();
    for i in 0..250u64 {
        history.push(i % 3 != 0, Duration::from_micros(i));
    }
    assert_eq!(history.len(), crate::status::HISTORY_ROUNDS);
    let rounds: Vec<(bool, u32)> = history.rounds().collect();
    assert_eq!(rounds[0], (false, 150));
    assert_eq!(rounds[1], (true, 151));
    assert_eq!(rounds[99], (false, 249));
    assert_eq!(history.0.capacity(), crate::status::HISTORY_ROUNDS);
    // An hour-long round is capped, not wrapped into the passed bit.
    history.push(false, Duration::from_secs(3600));
    assert_eq!(history.rounds().last(), Some((false, (1 << 31) - 1)));
}

#[test]
fn rise_fall_drains_and_timers_are_spelled_out() {
    let mut report = StatusReport::default();
    let mut s = service("dns", State::Up, Vec::new());
    s.rise_fall = Some(RiseFall {
        rounds: 1,
        needed: 3,
        toward: State::Down,
    });
    s.draining_left_ms = Some(12_000);
    s.drained_by = vec!["file".into(), "cli".into()];
    report.services.push(s);
    let page = render(&report, 1_796_000_100_000);
    assert!(page.contains("fall 1/3 → down"), "{page}");
    assert!(page.contains("withdrawn in 12s"));
    assert!(page.contains("drained by file, cli"));
}

#[test]
fn peers_show_bgp_bfd_and_what_they_hold() {
    use crate::peers::{BfdStatus, PeerStatus};
    let mut report = StatusReport::default();
    let bfd = |state: &str, path: &str| BfdStatus {
        state: state.into(),
        remote_state: "up".into(),
        path: path.into(),
        last_down: "control detection time expired".into(),
        multihop: false,
        tx_interval_ms: Some(100.0),
        detection_time_ms: Some(300.0),
        changes: 3,
    };
    report.peers.insert(
        "tor1".into(),
        PeerStatus {
            address: "192.0.2.1".into(),
            bgp: "established".into(),
            bfd: Some(bfd("up", "up")),
        },
    );
    report.peers.insert(
        "tor2".into(),
        PeerStatus {
            address: "192.0.2.2".into(),
            bgp: "idle".into(),
            bfd: Some(bfd("down", "down")),
        },
    );
    report.peers.insert(
        "<tor3>".into(),
        PeerStatus {
            address: "192.0.2.3".into(),
            bgp: "established".into(),
            bfd: None,
        },
    );
    report.routes.announced.insert(
        "native tor1".into(),
        [
            "198.51.100.1/32".parse().unwrap(),
            "198.51.100.2/32".parse().unwrap(),
        ]
        .into(),
    );
    let page = render(&report, 1_796_000_100_000);
    let section = &page[page
        .find("<section id=\"peers\">")
        .expect("a peers section")..];
    let row = |name: &str| {
        let start = section
            .find(&format!("<td class=\"n\">{name}</td>"))
            .unwrap();
        &section[start..start + section[start..].find("</tr>").unwrap()]
    };
    let tor1 = row("tor1");
    assert!(tor1.contains(">established<") && tor1.contains("tx 100 ms, detection 300 ms"));
    assert!(tor1.contains("2 routes"), "{tor1}");
    let tor2 = row("tor2");
    assert!(
        tor2.contains("holds BGP down (control detection time expired)"),
        "{tor2}"
    );
    assert!(tor2.contains("<span class=\"b down\">idle</span>"));
    assert!(tor2.contains("0 routes"));
    let tor3 = row("&lt;tor3&gt;");
    assert!(tor3.contains(">off<"), "{tor3}");
    // The route table has a column per peer.
    assert!(page.contains("<th>native tor1</th>"));
}
