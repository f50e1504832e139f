//! contrib/systemd: the unit and its bird drop-in load cleanly
//! (`systemd-analyze verify`), are sandboxed to an exposure level of at most
//! 2.0 (`systemd-analyze security --offline=true`, no running systemd
//! needed), the sysusers.d and tmpfiles.d files do what they say on a
//! scratch root, and the commands the units run are ones anycastd accepts.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const INSTALL: &str = "install the Debian package `systemd` (apt-get install -y systemd)";

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/systemd")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Fails with an install hint when a systemd tool is missing.
fn tool(name: &str) -> Command {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "`{name}` is not installed: {INSTALL}");
    Command::new(name)
}

/// The unit (and, with `bird`, its drop-in) copied into a scratch directory
/// with `/usr/bin/anycastd` pointing at the binary under test, since
/// `verify` checks that every Exec*= program exists.
fn staged(dir: &Path, bird: bool) -> PathBuf {
    let bin = anycastd_bin().display().to_string();
    let unit = dir.join("anycastd.service");
    let text = read(&contrib("anycastd.service"));
    assert!(text.contains("/usr/bin/anycastd"));
    std::fs::write(&unit, text.replace("/usr/bin/anycastd", &bin)).unwrap();
    if bird {
        let dropin = dir.join("anycastd.service.d");
        std::fs::create_dir(&dropin).unwrap();
        let text = read(&contrib("anycastd.service.d/bird.conf"));
        std::fs::write(
            dropin.join("bird.conf"),
            text.replace("/usr/bin/anycastd", &bin),
        )
        .unwrap();
    }
    unit
}

/// `systemd-analyze verify`: exit status and everything it printed.
fn verify(unit: &Path) -> (bool, String) {
    let out = tool("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .arg("--recursive-errors=one")
        .arg(unit)
        .output()
        .expect("run systemd-analyze verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn unit_and_bird_dropin_verify_cleanly() {
    for bird in [false, true] {
        let dir = scratch();
        let unit = staged(dir.path(), bird);
        let (ok, output) = verify(&unit);
        assert!(
            ok && output.trim().is_empty(),
            "systemd-analyze verify (bird drop-in: {bird}) is not clean:\n{output}"
        );
    }
    // The check can fail: an unknown key in the drop-in is reported.
    let dir = scratch();
    let unit = staged(dir.path(), true);
    let dropin = dir.path().join("anycastd.service.d/bird.conf");
    let text = read(&dropin);
    std::fs::write(&dropin, format!("{text}ReadWritePath=/tmp\n")).unwrap();
    let (_, output) = verify(&unit);
    assert!(
        output.contains("ReadWritePath"),
        "verify did not read the drop-in:\n{output}"
    );
}

/// `systemd-analyze security --offline=true` on `unit`: the overall
/// exposure level and the full report.
fn exposure(unit: &Path) -> (f64, String) {
    let out = tool("systemd-analyze")
        .arg("security")
        .arg("--offline=true")
        .arg("--no-pager")
        .arg(unit)
        .output()
        .expect("run systemd-analyze security");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let level = report
        .lines()
        .find_map(|l| {
            let rest = l
                .split("Overall exposure level for anycastd.service:")
                .nth(1)?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{report}"));
    (level, report)
}

#[test]
fn exposure_level_is_at_most_2() {
    // The shipped file as is (offline analysis needs no binary).
    let (level, report) = exposure(&contrib("anycastd.service"));
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{report}");
    assert!(
        report.contains("Service runs under a static non-root user identity"),
        "{report}"
    );
    // With the bird drop-in, which the offline analysis must pick up.
    let dir = scratch();
    let unit = staged(dir.path(), true);
    let (level, report) = exposure(&unit);
    assert!(
        report.contains("Service runs with supplementary groups"),
        "the bird drop-in was not read:\n{report}"
    );
    assert!(
        level <= 2.0,
        "exposure with the bird drop-in {level} > 2.0:\n{report}"
    );
}

#[test]
fn unit_has_what_the_daemon_relies_on() {
    let unit = read(&contrib("anycastd.service"));
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "ExecStart=/usr/bin/anycastd --config /etc/anycastd/config.yaml run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "User=anycastd",
        "RestartPreventExitStatus=2",
        // The control socket's and the drain state's directories.
        "RuntimeDirectory=anycastd/control",
        "StateDirectory=anycastd",
    ] {
        assert!(has(line), "anycastd.service lacks `{line}`");
    }
    // A graceful shutdown with the default drain_time (30 s), then the
    // slowest backend's goodbye (native: 5 s) and main's second, fit.
    let stop = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.strip_suffix('s')?.parse::<u64>().ok())
        .expect("TimeoutStopSec=Ns");
    assert!(
        stop > 30 + 5 + 1,
        "TimeoutStopSec={stop}s leaves no room for a graceful shutdown's drain"
    );
    // Raw ICMP sockets and binding port 179 need the host's user namespace.
    assert!(!unit.contains("PrivateUsers=yes"));
    let dropin = read(&contrib("anycastd.service.d/bird.conf"));
    for line in [
        "ExecStartPre=/usr/bin/anycastd --config /etc/anycastd/config.yaml bird-flush",
        "ExecStopPost=/usr/bin/anycastd --config /etc/anycastd/config.yaml bird-flush",
        "SupplementaryGroups=bird",
        "ReadWritePaths=/run/anycastd/bird",
        "ReadWritePaths=-/run/bird",
    ] {
        assert!(
            dropin.lines().any(|l| l.trim() == line),
            "bird.conf lacks `{line}`"
        );
    }
}

/// The value of `key=` in a unit file, as argv with the config path and
/// binary replaced.
fn exec_line(text: &str, key: &str, config: &Path) -> Vec<String> {
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}="));
    value
        .split_whitespace()
        .map(|word| match word {
            "/usr/bin/anycastd" => anycastd_bin().display().to_string(),
            "/etc/anycastd/config.yaml" => config.display().to_string(),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn bird_dropin_commands_flush_the_include_files() {
    let dir = scratch();
    let files = dir.path().join("anycastd");
    std::fs::create_dir(&files).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "announcer:\n  backend: bird\n  routes: [198.51.100.1/32, \"2001:db8:100::1/128\"]\n  bird:\n    include_file: {f}/anycastd4.conf\n    include_file6: {f}/anycastd6.conf\n    socket: {f}/no-bird.ctl\nservices:\n  - name: lo\n    check_interval: 1s\n    checks:\n      - kind: assigned_address\n        spec: {{ipv4: 127.0.0.1}}\n",
            f = files.display()
        ),
    )
    .unwrap();
    let dropin = read(&contrib("anycastd.service.d/bird.conf"));
    for key in ["ExecStartPre", "ExecStopPost"] {
        let argv = exec_line(&dropin, key, &config);
        std::fs::write(
            files.join("anycastd4.conf"),
            "route 198.51.100.1/32 blackhole;\n",
        )
        .unwrap();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .expect("run the drop-in's command");
        assert!(
            out.status.success(),
            "{key} {argv:?} failed (BIRD not running must be fine):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let four = read(&files.join("anycastd4.conf"));
        assert!(
            !four.contains("route "),
            "{key} left routes behind:\n{four}"
        );
        assert!(files.join("anycastd6.conf").exists(), "{key}: no IPv6 file");
    }
}

#[test]
fn exec_start_runs_and_answers_reload_and_stop() {
    let dir = scratch();
    let config = dir.path().join("config.yaml");
    // The exabgp backend writes to stdout, so the test sees it running.
    std::fs::write(
        &config,
        "announcer:\n  backend: exabgp\n  routes: [198.51.100.1/32]\nservices:\n  - name: lo\n    check_interval: 200ms\n    checks:\n      - kind: assigned_address\n        spec: {ipv4: 127.0.0.1}\n",
    )
    .unwrap();
    let unit = read(&contrib("anycastd.service"));
    let argv = exec_line(&unit, "ExecStart", &config);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ExecStart's command");
    let stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Plays ExaBGP: acknowledges every line.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = stdin.write_all(b"done\n").and_then(|()| stdin.flush());
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut daemon = Daemon {
        child,
        name: "anycastd (ExecStart)",
    };
    let want = "announce route 198.51.100.1/32 next-hop self";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut announced = false;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line == want => {
                announced = true;
                break;
            }
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    assert!(
        announced,
        "ExecStart's command did not announce; wrote {seen:?}"
    );
    // ExecReload's signal must not stop it.
    daemon.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "SIGHUP (ExecReload) stopped anycastd"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0));
}

#[test]
fn sysusers_and_tmpfiles_apply_to_a_scratch_root() {
    let root = scratch();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(etc.join("bird")).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nbird:x:4242:\n").unwrap();
    let out = tool("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(contrib("anycastd.sysusers"))
        .output()
        .expect("run systemd-sysusers");
    assert!(
        out.status.success(),
        "systemd-sysusers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = read(&etc.join("passwd"));
    let user = passwd
        .lines()
        .find(|l| l.starts_with("anycastd:"))
        .unwrap_or_else(|| panic!("no anycastd user:\n{passwd}"));
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    assert!(uid > 0 && uid < 1000, "not a system user: {user}");
    assert!(user.ends_with(":/usr/sbin/nologin"), "{user}");

    tmpfiles_create(root.path());
    use std::os::unix::fs::MetadataExt;
    let run = root.path().join("run/anycastd/bird");
    let meta = std::fs::metadata(&run).expect("/run/anycastd/bird");
    assert_eq!(meta.mode() & 0o7777, 0o2750);
    assert_eq!(meta.uid(), uid);
    assert_eq!(meta.gid(), 4242, "group bird");
    // The include files exist at boot, empty and valid, readable by BIRD.
    for file in ["anycastd4.conf", "anycastd6.conf", "prefixes.conf"] {
        let meta = std::fs::metadata(run.join(file)).expect(file);
        assert_eq!(meta.mode() & 0o777, 0o640, "{file}");
        assert_eq!((meta.uid(), meta.gid()), (uid, 4242), "{file}");
    }
    assert_eq!(read(&run.join("anycastd4.conf")), "");
    assert_eq!(
        read(&run.join("prefixes.conf")),
        "define ANYCASTD_PREFIXES_V4 = [];\ndefine ANYCASTD_PREFIXES_V6 = [];\n\
         define ANYCASTD_PREFIXES_V4_DEGRADED = [];\ndefine ANYCASTD_PREFIXES_V4_DRAINING = [];\n\
         define ANYCASTD_PREFIXES_V6_DEGRADED = [];\ndefine ANYCASTD_PREFIXES_V6_DRAINING = [];\n"
    );
}
