//! contrib/prometheus/alerts.yaml passes `promtool check rules` and its own
//! unit tests (`promtool test rules alerts_test.yaml`), and both the alerts
//! and the Grafana dashboard (contrib/grafana/anycastd.json) use only
//! metrics anycastd exports, as named in src/metrics.rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn promtool() -> Command {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`promtool` is not installed: install the Debian package `prometheus` \
         (apt-get install -y --no-install-recommends prometheus)"
    );
    Command::new("promtool")
}

fn run_promtool(args: &[&str], dir: &Path) {
    let out = promtool()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn prometheus_dir() -> PathBuf {
    root().join("contrib/prometheus")
}

#[test]
fn alert_rules_pass_promtool_check() {
    run_promtool(&["check", "rules", "alerts.yaml"], &prometheus_dir());
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    run_promtool(&["test", "rules", "alerts_test.yaml"], &prometheus_dir());
}

/// Every `"anycastd_..."` string literal in src/metrics.rs.
fn exported_metrics() -> BTreeSet<String> {
    let source = read(&root().join("src/metrics.rs"));
    let names: BTreeSet<String> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("anycastd_")
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_string)
        .collect();
    assert!(
        names.contains("anycastd_up") && names.contains("anycastd_service_up"),
        "could not read the metric names from src/metrics.rs: {names:?}"
    );
    names
}

/// Whether `name` is an exported series: a metric, or a summary's `_sum` /
/// `_count`.
fn is_exported(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || ["_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| exported.contains(base))
        })
}

/// The metric names a PromQL expression selects: identifiers outside
/// strings, label matchers, ranges and grouping clauses that are neither
/// functions nor keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 25] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Drop strings, `{...}` and `[...]`.
    let mut plain = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                plain.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let mut quote = None;
                while let Some(d) = chars.next() {
                    match quote {
                        Some(_) if d == '\\' => {
                            chars.next();
                        }
                        Some(q) if d == q => quote = None,
                        Some(_) => {}
                        None if d == '"' || d == '\'' || d == '`' => quote = Some(d),
                        None if d == close => break,
                        None => {}
                    }
                }
                plain.push(' ');
            }
            _ => plain.push(c),
        }
    }
    let bytes = plain.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() || b == b'$' || b == b'.' {
            // A number, a duration or a dashboard variable.
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || b"_.$".contains(&bytes[i]))
            {
                i += 1;
            }
            continue;
        }
        if !(b.is_ascii_alphabetic() || b == b'_' || b == b':') {
            if b == b'(' && skip_group {
                // The label list of `by (...)` and friends.
                while i < bytes.len() && bytes[i] != b')' {
                    i += 1;
                }
                skip_group = false;
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || b"_:".contains(&bytes[i])) {
            i += 1;
        }
        let word = &plain[start..i];
        let next = plain[i..].trim_start().chars().next();
        if GROUPING.contains(&word) {
            skip_group = true;
            continue;
        }
        skip_group = false;
        if next == Some('(') || KEYWORDS.contains(&word) {
            continue;
        }
        names.insert(word.to_string());
    }
    names
}

#[test]
fn metric_name_extraction() {
    assert_eq!(
        metric_names(
            r#"sum by (job, instance) (rate(anycastd_x_total{a="b{c}"}[5m])) != on(job) group_left(x) anycastd_y < 14 * 86400 or vector(0)"#
        ),
        BTreeSet::from(["anycastd_x_total".to_string(), "anycastd_y".to_string()])
    );
    assert_eq!(
        metric_names("up{job=\"anycastd\"} == 0"),
        BTreeSet::from(["up".to_string()])
    );
}

/// Alert expressions from alerts.yaml.
fn alert_exprs() -> Vec<(String, String)> {
    let text = read(&prometheus_dir().join("alerts.yaml"));
    let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("parse alerts.yaml");
    let mut out = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name").to_string();
            let expr = rule["expr"].as_str().expect("expr").to_string();
            out.push((name, expr));
        }
    }
    out
}

#[test]
fn alerts_cover_what_operators_need_and_use_real_metrics() {
    let exported = exported_metrics();
    let alerts = alert_exprs();
    let mut used = BTreeSet::new();
    for (alert, expr) in &alerts {
        for name in metric_names(expr) {
            assert!(
                name == "up" || is_exported(&name, &exported),
                "alert {alert} uses `{name}`, which anycastd does not export"
            );
            used.insert(name);
        }
    }
    for needed in [
        "up",
        "anycastd_up",
        "anycastd_service_up",
        "anycastd_check_up",
        "anycastd_certificate_expires_in_seconds",
        "anycastd_bgp_session_state",
        "anycastd_backend_errors_total",
    ] {
        assert!(used.contains(needed), "no alert on {needed}");
    }
}

/// Every PromQL string in the dashboard: panel targets and query variables.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(s))
                    | ("definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s))
                        if map.get("type").and_then(|t| t.as_str()) == Some("query") =>
                    {
                        out.push(s.clone())
                    }
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_exprs(item, out);
            }
        }
        _ => {}
    }
}

#[test]
fn grafana_dashboard_is_valid_and_uses_real_metrics() {
    let path = root().join("contrib/grafana/anycastd.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&path)).expect("contrib/grafana/anycastd.json is not JSON");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["uid"].as_str().is_some_and(|t| !t.is_empty()));
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut ids = BTreeSet::new();
    for panel in panels {
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} used twice");
        assert!(
            panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel {} has no queries",
            panel["title"]
        );
    }
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= panels.len());
    let exported = exported_metrics();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        // Grafana's `label_values(metric, label)`: the metric is the first argument.
        let promql = match expr.strip_prefix("label_values(") {
            Some(args) => args.split(',').next().unwrap_or(args),
            None => expr.as_str(),
        };
        let names = metric_names(promql);
        assert!(!names.is_empty(), "no metric in `{expr}`");
        for name in names {
            assert!(
                name.starts_with("anycastd_"),
                "the dashboard queries `{name}` (in `{expr}`): only anycastd_* metrics belong there"
            );
            assert!(
                is_exported(&name, &exported),
                "the dashboard queries `{name}`, which anycastd does not export"
            );
            used.insert(name);
        }
    }
    for needed in [
        "anycastd_service_up",
        "anycastd_check_up",
        "anycastd_routes_announced",
        "anycastd_bgp_session_state",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}
