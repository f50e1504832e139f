//! Shared helpers for integration tests against real daemons: a scratch
//! directory, a controllable HTTP health endpoint, BIRD and ExaBGP
//! processes that are cleaned up even when a test fails, and bounded waits.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The anycastd binary under test.
pub fn anycastd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_anycastd"))
}

/// Fails the test, saying what to install, when a tool is missing.
pub fn require(tools: &[(&str, &str)]) {
    for (tool, package) in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            found,
            "`{tool}` is not installed: install {package} (`.ci/run` does this)"
        );
    }
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test runs real routing daemons and must run as root (CI does)"
    );
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A scratch directory removed at the end of the test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("anycastd-test-")
        .tempdir()
        .expect("create scratch dir")
}

/// A real HTTP/1.1 server on 127.0.0.1 answering 200 while healthy, 503 otherwise.
pub struct HealthServer {
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    pub requests: Arc<AtomicU64>,
    /// The last request's method, Host header and body.
    pub last: Arc<std::sync::Mutex<(String, String, String)>>,
    stop: Arc<AtomicBool>,
}

impl HealthServer {
    pub fn start() -> HealthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind health server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(std::sync::Mutex::new(Default::default()));
        let (h, r, s, l) = (
            healthy.clone(),
            requests.clone(),
            stop.clone(),
            last.clone(),
        );
        thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (h, r, l) = (h.clone(), r.clone(), l.clone());
                        thread::spawn(move || serve_connection(stream, &h, &r, &l));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HealthServer {
            addr,
            healthy,
            requests,
            last,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves keep-alive HTTP/1.1 requests (no bodies expected beyond Content-Length).
fn serve_connection(
    stream: std::net::TcpStream,
    healthy: &AtomicBool,
    requests: &AtomicU64,
    last: &std::sync::Mutex<(String, String, String)>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        let mut host = String::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("host") {
                    host = value.trim().to_string();
                }
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(mut last) = last.lock() {
            let method = request_line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            *last = (method, host, String::from_utf8_lossy(&body).into_owned());
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let (status, text) = if healthy.load(Ordering::SeqCst) {
            ("200 OK", "ok\n")
        } else {
            ("503 Service Unavailable", "down\n")
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub name: &'static str,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not exit within {timeout:?}", self.name);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A BIRD 2 instance with its own config, socket and pid file.
pub struct Bird {
    pub socket: PathBuf,
    /// Read once BIRD is up: the pid file may be gone (with its scratch
    /// directory) by the time the guard drops.
    pid: Option<i32>,
}

impl Bird {
    pub fn start(dir: &Path, config: &str) -> Bird {
        Bird::start_in(None, dir, config)
    }

    /// BIRD in network namespace `netns` (`ip netns exec`), if given; its
    /// control socket and pid file stay in `dir`, reachable from here.
    pub fn start_in(netns: Option<&str>, dir: &Path, config: &str) -> Bird {
        let conf = dir.join("bird.conf");
        std::fs::write(&conf, config).unwrap();
        let socket = dir.join("bird.ctl");
        let pid_file = dir.join("bird.pid");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "bird"]);
                c
            }
            None => Command::new("bird"),
        };
        let status = command
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(&pid_file)
            .status()
            .expect("start bird");
        assert!(status.success(), "bird refused its config:\n{config}");
        let mut bird = Bird { socket, pid: None };
        wait_until(Duration::from_secs(10), "BIRD's control socket", || {
            bird.birdc("show status").contains("Daemon is up")
        });
        bird.pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        assert!(bird.pid.is_some(), "BIRD wrote no pid file");
        bird
    }

    pub fn birdc(&self, command: &str) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(command.split_whitespace())
            .output()
            .expect("run birdc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether BIRD's tables hold `prefix` (as `birdc show route` prints it).
    pub fn has_route(&self, prefix: &str) -> bool {
        self.birdc("show route")
            .lines()
            .any(|line| line.split_whitespace().next() == Some(prefix))
    }

    /// Whether the named BGP protocol is Established.
    pub fn established(&self, protocol: &str) -> bool {
        self.birdc(&format!("show protocols {protocol}"))
            .contains("Established")
    }

    pub fn pid(&self) -> Option<i32> {
        self.pid
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            // Wait (bounded) so the next test can bind the same addresses.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// anycastd with its stdin/stdout held by the test, playing ExaBGP's part:
/// every line anycastd writes is collected and acknowledged with `done`.
pub struct FakeExabgp {
    pub daemon: Daemon,
    lines: mpsc::Receiver<String>,
    stdin: Option<ChildStdin>,
    acks: Arc<AtomicBool>,
    ack_writer: Arc<std::sync::Mutex<Option<std::fs::File>>>,
}

impl FakeExabgp {
    /// Starts anycastd; its log (stderr) goes to `log`.
    pub fn spawn(config: &Path, extra_args: &[&str], log: &Path) -> FakeExabgp {
        let log = std::fs::File::create(log).expect("create log file");
        let mut child = Command::new(anycastd_bin())
            .arg("-c")
            .arg(config)
            .arg("--log-level")
            .arg("info")
            .args(extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start anycastd");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let acks = Arc::new(AtomicBool::new(true));
        let ack_writer = Arc::new(std::sync::Mutex::new(stdin.try_clone_fd()));
        let acking = acks.clone();
        let writer = ack_writer.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if acking.load(Ordering::SeqCst)
                    && let Ok(mut w) = writer.lock()
                    && let Some(w) = w.as_mut()
                {
                    let _ = w.write_all(b"done\n");
                    let _ = w.flush();
                }
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        FakeExabgp {
            daemon: Daemon {
                child,
                name: "anycastd",
            },
            lines: rx,
            stdin: Some(stdin),
            acks,
            ack_writer,
        }
    }

    /// The next line anycastd writes, waiting at most `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Every line written within `window`.
    pub fn lines_within(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(_) => break,
            }
        }
        out
    }

    /// Waits for a specific line, failing with what came instead.
    pub fn expect_line(&self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line == want => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("expected `{want}` within {timeout:?}; got {seen:?}");
    }

    /// Closes anycastd's stdin, as ExaBGP going away would.
    pub fn close_stdin(&mut self) {
        self.acks.store(false, Ordering::SeqCst);
        if let Ok(mut w) = self.ack_writer.lock() {
            w.take();
        }
        self.stdin.take();
    }
}

/// Duplicates a pipe end so one thread can ack while the test owns the original.
trait TryCloneFd {
    fn try_clone_fd(&self) -> Option<std::fs::File>;
}

impl TryCloneFd for ChildStdin {
    fn try_clone_fd(&self) -> Option<std::fs::File> {
        use std::os::fd::AsFd;
        self.as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::fs::File::from)
    }
}

/// PIDs of processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let out = Command::new("pgrep")
        .arg("-f")
        .arg(needle)
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A plain HTTP/1.0 GET on loopback, returning the body (for `/metrics`).
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_string())
}

/// The value of the first sample of `metrics` whose line starts with `series`
/// (a metric name, optionally with some of its labels: `name{service="a"`).
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(series))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

/// The value of the sample of metric `name` (exactly that name) carrying
/// every label of `labels`, in whatever order it prints them; the sample may
/// carry other labels too. `None` when no such sample is exported.
pub fn metric_sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, printed) = match series.split_once('{') {
                Some((metric, rest)) => (metric, parse_labels(rest.strip_suffix('}')?)),
                None => (series, Vec::new()),
            };
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| printed.iter().any(|(pk, pv)| pk == k && pv == v));
            if matches { value.parse().ok() } else { None }
        })
}

/// `a="x",b="y"` (Prometheus text format label pairs, escapes undone).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut end = after.len();
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            if escaped {
                value.push(if c == 'n' { '\n' } else { c });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = i;
                break;
            } else {
                value.push(c);
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_string(), value));
        rest = after.get(end + 1..).unwrap_or("");
    }
    labels
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free TCP port")
}

/// Runs `anycastd check` on `config` and returns its exit code and rows as
/// (check name → (verdict, reason)).
pub fn check_rows(
    config: &Path,
) -> (
    i32,
    std::collections::BTreeMap<String, (String, String)>,
    String,
) {
    let out = Command::new(anycastd_bin())
        .arg("-c")
        .arg(config)
        .arg("check")
        .output()
        .expect("run anycastd check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut rows = std::collections::BTreeMap::new();
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split("  ").filter(|c| !c.trim().is_empty()).collect();
        if cells.len() >= 3 {
            let reason = cells
                .get(4)
                .map(|r| r.trim().to_string())
                .unwrap_or_default();
            rows.insert(
                cells[1].trim().to_string(),
                (cells[2].trim().to_string(), reason),
            );
        }
    }
    (out.status.code().unwrap_or(-1), rows, text)
}

/// `anycastd check`'s rows: check name → (verdict, reason).
pub type Rows = std::collections::BTreeMap<String, (String, String)>;

/// A config with one service, `s`, whose checks follow (YAML list items).
pub const CHECKS_HEADER: &str = "announcer: {backend: exabgp, routes: [192.0.2.1/32]}\nservices:\n  - name: s\n    check_interval: 1s\n    checks:\n";

/// Runs `anycastd check` over `checks` (YAML list items under
/// [`CHECKS_HEADER`]): exit code, rows and the whole table.
pub fn run_checks(dir: &tempfile::TempDir, checks: &str) -> (i32, Rows, String) {
    let file = dir.path().join("checks.yaml");
    std::fs::write(&file, format!("{CHECKS_HEADER}{checks}")).unwrap();
    check_rows(&file)
}

/// Asserts row `name` has `verdict` and a reason containing `reason`.
pub fn assert_row(rows: &Rows, text: &str, name: &str, verdict: &str, reason: &str) {
    let (got_verdict, got_reason) = rows
        .get(name)
        .unwrap_or_else(|| panic!("no row {name} in\n{text}"));
    assert_eq!(got_verdict, verdict, "{name}:\n{text}");
    assert!(
        got_reason.contains(reason),
        "{name}: reason {got_reason:?} lacks {reason:?}\n{text}"
    );
}

/// Waits until a UDP server answers anything on `port` (bounded).
pub fn wait_for_udp(port: u16, probe: &[u8]) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 1500];
    wait_until(Duration::from_secs(10), "the server to answer", || {
        let _ = socket.send_to(probe, ("127.0.0.1", port));
        socket.recv_from(&mut buf).is_ok()
    });
}

/// dnsmasq on 127.0.0.1:`port`, authoritative for `.test` with
/// name.test → 127.0.0.9 and v6.test → 2001:db8::9 (plus `extra`
/// options), no upstream and no /etc/hosts; returns once it answers.
pub fn spawn_dnsmasq(port: u16, extra: &[&str]) -> Daemon {
    require(&[("dnsmasq", "dnsmasq")]);
    let port_arg = port.to_string();
    let mut args = vec![
        "-k",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "-u",
        "root",
        "--port",
        &port_arg,
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--local=/test/",
        "--address=/name.test/127.0.0.9",
        "--address=/v6.test/2001:db8::9",
    ];
    args.extend_from_slice(extra);
    let dnsmasq = spawn_server("dnsmasq", "dnsmasq", &args);
    // A query for "." with no recursion: any answer means dnsmasq is up.
    wait_for_udp(
        port,
        b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",
    );
    dnsmasq
}

/// A TLS server on 127.0.0.1 that presents `chain` (signed by `key`),
/// completes each handshake, sends close_notify and hangs up: what a
/// `tls_certificate` check of a remote certificate needs.
pub fn tls_handshake_server(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> SocketAddr {
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let config = config.clone();
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                while conn.is_handshaking() {
                    if conn.complete_io(&mut stream).is_err() {
                        return;
                    }
                }
                conn.send_close_notify();
                let _ = conn.complete_io(&mut stream);
                let _ = stream.flush();
            });
        }
    });
    addr
}

/// Output of a command (stdout then stderr) and whether it succeeded;
/// killed if it takes longer than `timeout`.
pub fn output_within(mut command: Command, timeout: Duration) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            // Polled often: callers time routers to the millisecond.
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    let out = child.wait_with_output().expect("collect output");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The last `lines` lines of a (log) file; empty if it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts a foreground server process, killed when the guard drops.
pub fn spawn_server(name: &'static str, program: &str, args: &[&str]) -> Daemon {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    Daemon { child, name }
}

/// The `services:` block of a config with one service, `web`, checked every
/// 200 ms by an HTTP check of `url` (one try, 500 ms timeout).
pub fn web_service_yaml(url: &str) -> String {
    format!(
        r#"services:
  - name: web
    check_interval: 200ms
    checks:
      - kind: http_2xx
        spec: {{url: "{url}", method: GET, tries: 1, interval: 50ms, timeout: 500ms}}
"#
    )
}

impl FakeExabgp {
    /// Writes `line` on anycastd's stdin, as ExaBGP would (e.g. `shutdown 4242 1`).
    pub fn send_line(&self, line: &str) {
        let mut writer = self.ack_writer.lock().expect("stdin writer");
        let writer = writer.as_mut().expect("stdin still open");
        writer
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| writer.flush())
            .expect("write to anycastd's stdin");
    }
}

/// Starts anycastd on `config` at log level `level`, behind `prefix` (a
/// wrapper such as `ip netns exec NS`, or `setpriv … --`; empty for none),
/// appending its log (stderr) to `log`.
pub fn spawn_anycastd(prefix: &[&str], config: &Path, level: &str, log: &Path) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open anycastd's log");
    let mut command = match prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(anycastd_bin());
            c
        }
        None => Command::new(anycastd_bin()),
    };
    let child = command
        .arg("-c")
        .arg(config)
        .args(["--log-level", level])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start anycastd");
    Daemon {
        child,
        name: "anycastd",
    }
}

/// `systemd-tmpfiles --create` of contrib/systemd/anycastd-bird.tmpfiles on
/// the scratch root `root` (whose etc/passwd and etc/group name the owners).
pub fn tmpfiles_create(root: &Path) {
    let snippet =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd/anycastd-bird.tmpfiles");
    let out = Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", root.display()))
        .arg(&snippet)
        .output()
        .expect("run systemd-tmpfiles (install the Debian package `systemd`)");
    assert!(
        out.status.success(),
        "systemd-tmpfiles: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
