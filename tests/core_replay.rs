//! Record and replay of the engine's core decisions: each
//! `tests/replay/NAME.in.jsonl` holds timed inputs; the outputs the core
//! returns are compared with `tests/replay/NAME.out.jsonl`. Run with
//! `ANYCASTD_BLESS=1` to (re)write the golden files after a deliberate
//! change, and review the diff.
//!
//! Input lines: `{"at_ms": N, ...}` with one of `configure` (a config as
//! JSON), `round` (`service`, `epoch`, `passed` or `level`, `reason`),
//! `task_ended` (`service`, `epoch`, `panic`), `drain` (`service` or none
//! for the node, `source`, `on`), or nothing (time only passes). Before
//! each input, every stale deadline that falls due is fed as a tick, as the
//! engine loop does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anycastd::config::{BackendKind, Format, load_str};
use anycastd::engine::health::Level;
use anycastd::engine::{Core, DrainSource, Input, Output};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    at_ms: u64,
    #[serde(default)]
    configure: Option<serde_json::Value>,
    #[serde(default)]
    round: Option<Round>,
    #[serde(default)]
    task_ended: Option<TaskEnded>,
    #[serde(default)]
    drain: Option<Drain>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Drain {
    #[serde(default)]
    service: Option<String>,
    source: DrainSource,
    on: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Round {
    service: String,
    epoch: u64,
    #[serde(default)]
    passed: Option<bool>,
    #[serde(default)]
    level: Option<Level>,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskEnded {
    service: String,
    epoch: u64,
    #[serde(default)]
    panic: Option<String>,
}

fn input_of(line: Line, source: &Path) -> Option<Input> {
    if let Some(config) = line.configure {
        let config = load_str(
            &config.to_string(),
            Format::Json,
            source,
            Some(BackendKind::Exabgp),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        return Some(Input::Configure(Arc::new(config)));
    }
    if let Some(r) = line.round {
        let level = match (r.level, r.passed) {
            (Some(level), _) => level,
            (None, Some(true)) => Level::Passing,
            (None, _) => Level::Failing,
        };
        return Some(Input::Round {
            service: r.service,
            epoch: r.epoch,
            level,
            reason: r.reason,
        });
    }
    if let Some(d) = line.drain {
        return Some(Input::Drain {
            service: d.service,
            source: d.source,
            on: d.on,
        });
    }
    line.task_ended.map(|t| Input::TaskEnded {
        service: t.service,
        epoch: t.epoch,
        panic: t.panic,
    })
}

fn output_line(at: Duration, output: &Output) -> String {
    let mut value = serde_json::json!({ "at_ms": at.as_millis() as u64 });
    value["output"] = serde_json::to_value(output).unwrap();
    value.to_string()
}

/// Replays one recording; returns the outputs, one JSON line each.
fn replay(input: &Path) -> String {
    let text = std::fs::read_to_string(input).unwrap();
    let mut core = Core::new();
    let mut out = String::new();
    let mut emit = |at: Duration, outputs: Vec<Output>| {
        for output in outputs {
            out.push_str(&output_line(at, &output));
            out.push('\n');
        }
    };
    for (number, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", input.display(), number + 1));
        let at = Duration::from_millis(line.at_ms);
        // The engine loop's timer: every deadline up to now fires first.
        for _ in 0..1000 {
            match core.next_deadline() {
                Some(due) if due <= at => {
                    let outputs = core.handle(due, Input::Tick);
                    emit(due, outputs);
                }
                _ => break,
            }
        }
        if let Some(event) = input_of(line, input) {
            let outputs = core.handle(at, event);
            emit(at, outputs);
        }
    }
    out
}

fn recordings() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replay");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.jsonl"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no recordings in {}", dir.display());
    inputs
}

#[test]
fn core_decisions_match_the_golden_files() {
    let bless = std::env::var_os("ANYCASTD_BLESS").is_some();
    let mut failures = Vec::new();
    for input in recordings() {
        let golden = PathBuf::from(input.to_string_lossy().replace(".in.jsonl", ".out.jsonl"));
        let got = replay(&input);
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}: outputs differ from {} (ANYCASTD_BLESS=1 rewrites it)\n--- want\n{want}--- got\n{got}",
                input.display(),
                golden.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
