//! The HTTP service that anycastd health-checks during the benchmark
//! (`bench/run.sh`). It stands in for 1..N services at once, so that the
//! checker's schedule can be observed from the outside.
//!
//! Endpoints (all `GET`, HTTP/1.1 with keep-alive):
//!
//! * `/svc/N`: 200, or 503 while service N is set failing; the arrival
//!   time is recorded per service.
//! * `/control/fail/N`: make service N answer 503 from now on.
//! * `/control/ok/N`: make service N answer 200 again.
//! * `/control/fail-all`: make every service answer 503, whatever its own
//!   flag, until `/control/ok-all`; one request, so that many services
//!   see the change in the same check round.
//! * `/control/ok-all`: end `fail-all`; services set failing one by one
//!   keep failing.
//! * `/control/count`: total `/svc/*` requests served so far.
//! * `/control/dump`: every arrival, one line per service: `N t1 t2 ...`,
//!   times in nanoseconds on a monotonic clock that starts with this process.
//! * `/control/reset`: forget every arrival and failing flag (`fail-all` too).
//!
//! With `--dump-file PATH`, SIGTERM/SIGINT write the same dump to PATH before
//! exiting, so arrivals survive a harness that only kills the server.
//!
//! On start it prints `listening on ADDR` on stdout: with `--listen
//! 127.0.0.1:0` the harness learns the port without guessing a free one.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpSocket;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(about = "HTTP target for the anycastd benchmark")]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// On SIGTERM/SIGINT, write the arrival dump here before exiting.
    #[arg(long, value_name = "PATH")]
    dump_file: Option<PathBuf>,
}

/// Everything the handlers share. One mutex is enough: the server runs on a
/// single thread, so it is never contended, and a single thread keeps the
/// server's CPU share small and predictable next to anycastd on a small box.
struct State {
    started: Instant,
    served: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Arrival times per service, ns since `started`. A BTreeMap so the dump
    /// comes out in service order without sorting.
    arrivals: BTreeMap<u32, Vec<u64>>,
    failing: HashSet<u32>,
    /// Set by `/control/fail-all`: every service fails.
    all_failing: bool,
}

impl State {
    fn dump(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // ~12 bytes per timestamp; avoids regrowing a multi-MB string.
        let total: usize = inner.arrivals.values().map(Vec::len).sum();
        let mut out = String::with_capacity(64 + total * 12);
        out.push_str("# service arrival_ns... (monotonic, since server start)\n");
        for (service, times) in &inner.arrivals {
            let _ = write!(out, "{service}");
            for t in times {
                let _ = write!(out, " {t}");
            }
            out.push('\n');
        }
        out
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// The number after `prefix` in `path`, if `path` is exactly `prefix` + digits.
fn service_number(path: &str, prefix: &str) -> Option<u32> {
    path.strip_prefix(prefix)?.parse().ok()
}

fn handle(state: &State, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let path = request.uri().path();
    // The hot path: timestamp first, so lock time is not part of the arrival.
    if let Some(n) = service_number(path, "/svc/") {
        let now = state.started.elapsed().as_nanos() as u64;
        state.served.fetch_add(1, Ordering::Relaxed);
        let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.arrivals.entry(n).or_default().push(now);
        return if inner.all_failing || inner.failing.contains(&n) {
            reply(StatusCode::SERVICE_UNAVAILABLE, "failing\n")
        } else {
            reply(StatusCode::OK, "ok\n")
        };
    }
    if let Some(n) = service_number(path, "/control/fail/") {
        state
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failing
            .insert(n);
        return reply(StatusCode::OK, "ok\n");
    }
    if let Some(n) = service_number(path, "/control/ok/") {
        state
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failing
            .remove(&n);
        return reply(StatusCode::OK, "ok\n");
    }
    match path {
        "/control/fail-all" | "/control/ok-all" => {
            state
                .inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .all_failing = path == "/control/fail-all";
            reply(StatusCode::OK, "ok\n")
        }
        "/control/count" => reply(
            StatusCode::OK,
            format!("{}\n", state.served.load(Ordering::Relaxed)),
        ),
        "/control/dump" => reply(StatusCode::OK, state.dump()),
        "/control/reset" => {
            *state.inner.lock().unwrap_or_else(|e| e.into_inner()) = Inner::default();
            state.served.store(0, Ordering::Relaxed);
            reply(StatusCode::OK, "ok\n")
        }
        _ => reply(StatusCode::NOT_FOUND, "not found\n"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let state = Arc::new(State {
        started: Instant::now(),
        served: AtomicU64::new(0),
        inner: Mutex::new(Inner::default()),
    });

    let socket = match args.listen {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    // anycastd opens ~one connection per service at start-up, all at once;
    // a short accept queue would drop SYNs and add 1 s retransmits to the
    // start-up time being measured.
    let listener = socket.listen(4096)?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", listener.local_addr()?)?;
        stdout.flush()?;
    }

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let (stream, _) = tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("bench-http-server: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Responses are one small write; Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = handle(&state, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }

    if let Some(path) = &args.dump_file {
        std::fs::write(path, state.dump())?;
    }
    Ok(())
}
