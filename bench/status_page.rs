//! What the status page costs at scale (issue 15): a status board with
//! BENCH_SERVICES services (default 1,000), one check each, every check's
//! history full (100 rounds, one round in 7 failed) and the change log
//! full; then the page rendered BENCH_RENDERS times (default 50), as
//! `GET /` does (a snapshot of the board, then the HTML).
//!
//! Prints the CPU time per render (this thread's CPU clock), the page's
//! size, and what the histories cost: their bytes as allocated, and the
//! process's resident memory before and after they were filled.
//!
//! Usage: cargo run --release --example bench-status-page

use std::time::Duration;

use anycastd::config::{self, Format};
use anycastd::status::{CheckStatus, HISTORY_ROUNDS, State, StatusBoard, Verdict};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let services = env("BENCH_SERVICES", 1000);
    let renders = env("BENCH_RENDERS", 50).max(1);
    let mut yaml = String::from("announcer: {backend: exabgp, routes: []}\nservices:\n");
    for i in 0..services {
        yaml.push_str(&format!(
            "  - name: svc-{i}\n    check_interval: 1s\n    routes: [\"10.{}.{}.{}/32\"]\n    checks: [{{kind: http_2xx, name: health, spec: {{url: \"http://127.0.0.1:8080/svc/{i}\", method: GET, tries: 1, interval: 100ms, timeout: 1s}}}}]\n",
            i / 65536 + 1,
            (i / 256) % 256,
            i % 256
        ));
    }
    let config = config::load_str(
        &yaml,
        Format::Yaml,
        std::path::Path::new("bench.yaml"),
        None,
    )
    .expect("the bench config loads");
    let board = StatusBoard::new();
    board.apply_config(&config);

    let before = rss_kib();
    for round in 0..HISTORY_ROUNDS {
        for i in 0..services {
            let passed = (round + i) % 7 != 0;
            let check = CheckStatus {
                name: "health".into(),
                verdict: if passed { Verdict::Pass } else { Verdict::Fail },
                reason: if passed {
                    String::new()
                } else {
                    format!(
                        "expected status 2xx, got 503 Service Unavailable from http://127.0.0.1:8080/svc/{i}"
                    )
                },
                duration_ms: Some(0.2 + (round % 13) as f64 / 10.0),
                history: Default::default(),
            };
            let state = if passed { State::Up } else { State::Down };
            board.record_round(&format!("svc-{i}"), vec![check], state);
        }
    }
    for i in 0..anycastd::status::CHANGES_KEPT {
        board.transition(
            &format!("svc-{}", i % services.max(1)),
            State::Up,
            State::Down,
            "health: expected status 2xx, got 503 Service Unavailable",
        );
    }
    let after = rss_kib();
    let report = board.report();
    let history_bytes: usize = report
        .services
        .iter()
        .flat_map(|s| &s.checks)
        .map(|c| c.history.len() * 4 + std::mem::size_of_val(&c.history))
        .sum();

    let mut size = 0;
    let start = thread_cpu();
    for _ in 0..renders {
        size = board.page().len();
    }
    let per_render = (thread_cpu() - start) / renders as u32;
    println!("services                      {services}");
    println!("page renders                  {renders}");
    println!(
        "CPU per render                {:.2} ms (snapshot + HTML)",
        per_render.as_secs_f64() * 1000.0
    );
    println!(
        "page size                     {:.0} KiB",
        size as f64 / 1024.0
    );
    println!(
        "histories, allocated          {:.0} KiB ({} rounds x 4 bytes per check)",
        history_bytes as f64 / 1024.0,
        HISTORY_ROUNDS
    );
    println!(
        "RSS before / after filling    {before} / {after} KiB (+{} KiB, board and change log included)",
        after.saturating_sub(before)
    );
}
