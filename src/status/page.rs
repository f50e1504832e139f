//! The status page, `GET /` on the metrics listener: one self-contained
//! HTML document rendered from a [`StatusReport`] snapshot, for the
//! on-call engineer who wants to look. Nothing is fetched (no scripts,
//! fonts, images or stylesheets from elsewhere: the host may have no
//! internet), it refreshes itself with a meta refresh (no JavaScript at
//! all), reads on a phone, and is read-only: actions stay on the local
//! control socket.
//!
//! Every string that comes from the configuration or from the network
//! (names, reasons, attributes, peer states) goes through [`escape`]; the
//! page has no inline event handlers and no `<script>`, so a name such as
//! `<script>` is shown as text.

use std::fmt::Write;
use std::time::Duration;

use super::{History, ServiceStatus, State, StatusReport, Verdict};
use crate::config::format_duration;

/// Seconds between the page's own refreshes.
const REFRESH_SECS: u32 = 5;
/// The history graph: pixels per round, and its height.
const BAR: usize = 2;
const GRAPH_HEIGHT: u32 = 20;

/// Renders the page for `report` as seen at `now` (Unix time, ms).
pub fn render(report: &StatusReport, now: u64) -> String {
    // About 1.5 KB per check (the graph) and 0.5 KB per service besides.
    let checks: usize = report.services.iter().map(|s| s.checks.len()).sum();
    let mut out = String::with_capacity(16_384 + checks * 1_600 + report.services.len() * 600);
    head(&mut out, report, now);
    services(&mut out, report, now);
    routes(&mut out, report);
    peers(&mut out, report);
    changes(&mut out, report, now);
    out.push_str("</main></body></html>\n");
    out
}

/// Appends `text` with `& < > " '` escaped: safe in element content and
/// in quoted attribute values.
pub fn escape(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

const STYLE: &str = "\
:root{--up:#1a7f37;--deg:#b08800;--drn:#8250df;--down:#cf222e;--unk:#6e7781;--bg:#fff;--fg:#1f2328;--mute:#59636e;--line:#d1d9e0}\
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--mute:#9198a1;--line:#30363d}}\
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:var(--bg);color:var(--fg)}\
header{padding:12px 16px;border-bottom:1px solid var(--line)}h1{font-size:20px;margin:0}h2{font-size:16px;margin:20px 0 8px}\
main{padding:0 16px 24px}.mute{color:var(--mute)}.sum span{margin-right:10px;white-space:nowrap}\
.b{display:inline-block;padding:0 7px;border-radius:10px;color:#fff;font-weight:600;font-size:12px;line-height:18px}\
.up,.pass{background:var(--up)}.degraded{background:var(--deg)}.draining,.drained{background:var(--drn)}.down,.fail{background:var(--down)}.unknown{background:var(--unk)}\
.svc{border:1px solid var(--line);border-left:6px solid var(--unk);border-radius:6px;padding:8px 10px;margin:8px 0}\
.svc.s-up{border-left-color:var(--up)}.svc.s-degraded{border-left-color:var(--deg)}.svc.s-draining,.svc.s-drained{border-left-color:var(--drn)}.svc.s-down{border-left-color:var(--down)}\
.svc .name{font-weight:600;font-size:15px;word-break:break-all}.svc .why{margin:4px 0;word-break:break-word}\
.wrap{overflow-x:auto}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px 3px 0;vertical-align:top;border-bottom:1px solid var(--line)}\
th{font-weight:600;color:var(--mute);font-size:12px}td.n{white-space:nowrap}\
.chk{table-layout:fixed;min-width:560px}.chk td{border:0;overflow:hidden;text-overflow:ellipsis}.chk td:nth-child(1){width:22%}.chk td:nth-child(2){width:56px}.chk td:nth-child(3){width:80px}.chk td:nth-child(4){width:212px}.chk .why{color:var(--mute);word-break:break-word}\
svg.h{display:block;background:rgba(127,127,127,.12)}code{font-size:12px;word-break:break-all}\
@media (max-width:640px){main,header{padding-left:10px;padding-right:10px}.chk{table-layout:auto;min-width:0}\
.chk tr{display:flex;flex-wrap:wrap;align-items:center;gap:2px 8px;padding:4px 0;border-top:1px solid var(--line)}\
.chk td,.chk td:nth-child(n){display:block;width:auto;padding:0}.chk td.why{flex-basis:100%}svg.h{max-width:100%}}";

fn head(out: &mut String, report: &StatusReport, now: u64) {
    let count = |state: State| report.services.iter().filter(|s| s.state == state).count();
    let down = count(State::Down);
    out.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    let _ = write!(
        out,
        "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">"
    );
    let _ = write!(
        out,
        "<title>{}anycastd: {} services</title><style>{STYLE}</style></head><body><header><h1>anycastd</h1>",
        if down > 0 {
            format!("{down} down · ")
        } else {
            String::new()
        },
        report.services.len(),
    );
    out.push_str("<p class=\"sum\" id=\"summary\">");
    for state in [
        State::Down,
        State::Draining,
        State::Degraded,
        State::Unknown,
        State::Drained,
        State::Up,
    ] {
        let n = count(state);
        if n > 0 {
            let _ = write!(
                out,
                "<span><span class=\"b {s}\">{s}</span> {n}</span>",
                s = state.as_str()
            );
        }
    }
    let _ = write!(out, "</p><p class=\"mute\">version ",);
    escape(out, &report.version);
    let _ = write!(
        out,
        " · {} UTC · refreshes every {REFRESH_SECS} s · read-only (drain, check-now and reload: <code>anycastd</code> on the host)</p></header><main>",
        utc(now)
    );
}

/// Worst first: what the on-call engineer came for is at the top.
fn rank(state: State) -> u8 {
    match state {
        State::Down => 0,
        State::Draining => 1,
        State::Degraded => 2,
        State::Unknown => 3,
        State::Drained => 4,
        State::Up => 5,
    }
}

fn services(out: &mut String, report: &StatusReport, now: u64) {
    let _ = write!(
        out,
        "<section id=\"services\"><h2>Services ({})</h2>",
        report.services.len()
    );
    let mut order: Vec<&ServiceStatus> = report.services.iter().collect();
    // Stable: configuration order within a state.
    order.sort_by_key(|s| rank(s.state));
    for service in order {
        service_card(out, service, now);
    }
    if report.services.is_empty() {
        out.push_str("<p class=\"mute\">No services configured.</p>");
    }
    out.push_str("</section>");
}

fn service_card(out: &mut String, service: &ServiceStatus, now: u64) {
    let state = service.state.as_str();
    let _ = write!(
        out,
        "<div class=\"svc s-{state}\"><div><span class=\"b {state}\">{state}</span> <span class=\"name\">"
    );
    escape(out, &service.name);
    out.push_str("</span>");
    if let Some(since) = service.since_ms {
        let _ = write!(
            out,
            " <span class=\"mute\" title=\"since {} UTC\">for {}</span>",
            utc(since),
            ago(now.saturating_sub(since))
        );
    }
    if let Some(left) = service.draining_left_ms {
        let _ = write!(
            out,
            " <span class=\"mute\">· withdrawn in {}</span>",
            format_duration(Duration::from_millis(left))
        );
    }
    if let Some(left) = service.announce_in_ms {
        let _ = write!(
            out,
            " <span class=\"mute\">· announced in {}</span>",
            format_duration(Duration::from_millis(left))
        );
    }
    if let Some(rf) = service.rise_fall {
        let _ = write!(
            out,
            " <span class=\"mute\">· {} {}/{} → {}</span>",
            if rank(rf.toward) > rank(service.state) {
                "rise"
            } else {
                "fall"
            },
            rf.rounds,
            rf.needed,
            rf.toward.as_str()
        );
    }
    if !service.drained_by.is_empty() {
        out.push_str(" <span class=\"mute\">· drained by ");
        escape(out, &service.drained_by.join(", "));
        out.push_str("</span>");
    }
    out.push_str("</div>");
    if !service.reason.is_empty() {
        out.push_str("<div class=\"why\">");
        escape(out, &service.reason);
        out.push_str("</div>");
    }
    out.push_str("<div class=\"wrap\"><table class=\"chk\">");
    for check in &service.checks {
        let verdict = check.verdict.as_str();
        out.push_str("<tr><td class=\"n\">");
        escape(out, &check.name);
        let _ = write!(
            out,
            "</td><td><span class=\"b {}\">{verdict}</span></td><td class=\"n\">",
            match check.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "fail",
                Verdict::Unknown => "unknown",
            }
        );
        if let Some(ms) = check.duration_ms {
            out.push_str(&format_duration(Duration::from_secs_f64(
                ms.max(0.0) / 1000.0,
            )));
        }
        out.push_str("</td><td>");
        history_svg(out, &check.history);
        out.push_str("</td><td class=\"why\">");
        escape(out, &check.reason);
        out.push_str("</td></tr>");
    }
    out.push_str("</table></div></div>");
}

/// The last rounds as bars, oldest left: a passed round's height is its
/// duration against the slowest shown, a failed round is a full red bar.
fn history_svg(out: &mut String, history: &History) {
    if history.is_empty() {
        out.push_str("<span class=\"mute\">no rounds yet</span>");
        return;
    }
    let slowest = history.rounds().map(|(_, us)| us).max().unwrap_or(1).max(1);
    let failed = history.rounds().filter(|(passed, _)| !passed).count();
    let width = super::HISTORY_ROUNDS * BAR;
    let _ = write!(
        out,
        "<svg class=\"h\" width=\"{width}\" height=\"{GRAPH_HEIGHT}\" viewBox=\"0 0 {width} {GRAPH_HEIGHT}\" role=\"img\"><title>last {n} rounds: {failed} failed, slowest {slow}</title><path fill=\"#2da44e\" d=\"",
        n = history.len(),
        slow = format_duration(Duration::from_micros(u64::from(slowest))),
    );
    // Right-aligned: the newest round is always at the right edge. Each
    // path is one skyline along the baseline, a round after the other
    // (`h2` over a round of the other kind adds no area): about half the
    // bytes of a rectangle per round.
    let offset = (super::HISTORY_ROUNDS - history.len()) * BAR;
    let _ = write!(out, "M{offset} {GRAPH_HEIGHT}");
    for (passed, us) in history.rounds() {
        if passed {
            let h = 2 + u64::from(us) * u64::from(GRAPH_HEIGHT - 2) / u64::from(slowest);
            let _ = write!(out, "v-{h}h{BAR}v{h}");
        } else {
            let _ = write!(out, "h{BAR}");
        }
    }
    let _ = write!(
        out,
        "z\"/><path fill=\"#cf222e\" d=\"M{offset} {GRAPH_HEIGHT}"
    );
    for (passed, _) in history.rounds() {
        if passed {
            let _ = write!(out, "h{BAR}");
        } else {
            let _ = write!(out, "v-{GRAPH_HEIGHT}h{BAR}v{GRAPH_HEIGHT}");
        }
    }
    out.push('z');
    out.push_str("\"/></svg>");
}

fn routes(out: &mut String, report: &StatusReport) {
    let routes = &report.routes;
    let mut all: std::collections::BTreeSet<ipnet::IpNet> = routes.configured.clone();
    all.extend(routes.desired.keys().copied());
    for announced in routes.announced.values() {
        all.extend(announced);
    }
    let _ = write!(
        out,
        "<section id=\"routes\"><h2>Routes ({})</h2><div class=\"wrap\"><table><thead><tr><th>Route</th><th>Desired</th>",
        all.len()
    );
    for backend in routes.announced.keys() {
        out.push_str("<th>");
        escape(out, backend);
        out.push_str("</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for route in &all {
        let _ = write!(out, "<tr><td class=\"n\"><code>{route}</code></td><td>");
        match routes.desired.get(route) {
            Some(how) => {
                let class = how.class.as_str();
                let _ = write!(out, "<span class=\"b {class}\">{class}</span> ");
                let attributes = how.attributes.to_string();
                if !attributes.is_empty() {
                    out.push_str("<code>");
                    escape(out, &attributes);
                    out.push_str("</code>");
                }
            }
            None => out.push_str("<span class=\"mute\">withdrawn</span>"),
        }
        out.push_str("</td>");
        for announced in routes.announced.values() {
            out.push_str(if announced.contains(route) {
                "<td>announced</td>"
            } else {
                "<td class=\"mute\">–</td>"
            });
        }
        out.push_str("</tr>");
    }
    if all.is_empty() {
        out.push_str("<tr><td colspan=\"2\" class=\"mute\">none</td></tr>");
    }
    out.push_str("</tbody></table></div></section>");
}

fn peers(out: &mut String, report: &StatusReport) {
    if report.peers.is_empty() {
        return;
    }
    out.push_str("<section id=\"peers\"><h2>BGP peers</h2><div class=\"wrap\"><table><thead><tr><th>Peer</th><th>Address</th><th>BGP</th><th>BFD</th><th>Holds</th></tr></thead><tbody>");
    for (name, peer) in &report.peers {
        let established = peer.bgp == "established";
        out.push_str("<tr><td class=\"n\">");
        escape(out, name);
        out.push_str("</td><td><code>");
        escape(out, &peer.address);
        let _ = write!(
            out,
            "</code></td><td><span class=\"b {}\">",
            if established { "up" } else { "down" }
        );
        escape(out, &peer.bgp);
        out.push_str("</span></td><td>");
        match &peer.bfd {
            None => out.push_str("<span class=\"mute\">off</span>"),
            Some(bfd) => {
                let class = match bfd.path.as_str() {
                    "up" => "up",
                    "down" => "down",
                    _ => "unknown",
                };
                let _ = write!(out, "<span class=\"b {class}\">");
                escape(out, &bfd.state);
                out.push_str("</span> ");
                match bfd.path.as_str() {
                    "up" => {
                        let _ = write!(
                            out,
                            "<span class=\"mute\">tx {} ms, detection {} ms</span>",
                            bfd.tx_interval_ms.unwrap_or(0.0),
                            bfd.detection_time_ms.unwrap_or(0.0)
                        );
                    }
                    "down" => {
                        out.push_str("holds BGP down (");
                        escape(out, &bfd.last_down);
                        out.push(')');
                    }
                    "waiting" => out.push_str("<span class=\"mute\">waiting for the peer</span>"),
                    _ => out.push_str(
                        "<span class=\"mute\">peer not answering: BGP runs without BFD</span>",
                    ),
                }
            }
        }
        let holds = report
            .routes
            .announced
            .get(&format!("native {name}"))
            .map_or(0, |r| r.len());
        let plural = if holds == 1 { "" } else { "s" };
        let _ = write!(out, "</td><td>{holds} route{plural}</td></tr>");
    }
    out.push_str("</tbody></table></div></section>");
}

fn changes(out: &mut String, report: &StatusReport, now: u64) {
    out.push_str("<section id=\"changes\"><h2>Recent changes</h2>");
    if report.changes.is_empty() {
        out.push_str("<p class=\"mute\">None since start.</p></section>");
        return;
    }
    out.push_str("<div class=\"wrap\"><table><thead><tr><th>When (UTC)</th><th>Service</th><th>Change</th><th>Why</th></tr></thead><tbody>");
    for change in &report.changes {
        let _ = write!(
            out,
            "<tr><td class=\"n\" title=\"{} ago\">{}</td><td>",
            ago(now.saturating_sub(change.at_ms)),
            utc(change.at_ms)
        );
        escape(out, &change.service);
        let (from, to) = (change.from.as_str(), change.to.as_str());
        let _ = write!(
            out,
            "</td><td class=\"n\"><span class=\"b {from}\">{from}</span> → <span class=\"b {to}\">{to}</span></td><td>"
        );
        escape(out, &change.reason);
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></div></section>");
}

/// Milliseconds as `3m12s`, whole seconds.
fn ago(ms: u64) -> String {
    format_duration(Duration::from_secs(ms / 1000))
}

/// Unix time in ms as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(unix_ms: u64) -> String {
    let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests;
