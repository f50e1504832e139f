//! The local control socket: `anycastd drain`, `undrain`, `check-now`,
//! `reload` and `routes --diff` talk to the running daemon through it.
//!
//! A Unix socket (never the network) with owner/group permissions
//! (`control.socket_mode`, 0660 by default). One JSON request per
//! connection, one JSON answer, then the daemon closes it:
//!
//! ```text
//! → {"verb":"drain","services":["dns"]}
//! ← {"ok":true,"message":"drained\ndns: draining (…)\n"}
//! ```
//!
//! Bounded like every listener of the daemon: at most [`MAX_CLIENTS`]
//! connections at once (more wait in the kernel's backlog), a request of at
//! most [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`], an answer within
//! [`ANSWER_TIMEOUT`].

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{self, BackendKind, Config};
use crate::engine::{self, DrainSource, EngineCommand, PreparedService};

/// Connections served at once.
pub const MAX_CLIENTS: usize = 16;
/// The longest request read.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Time for a client to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the daemon to answer (a reload loads and builds every check).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case")]
pub enum Request {
    /// Drain the named services, or the node when none are named.
    Drain {
        #[serde(default)]
        services: Vec<String>,
    },
    /// Lift drains set by `drain` (not maintenance files).
    Undrain {
        #[serde(default)]
        services: Vec<String>,
    },
    /// Run a round of the named services (all when none) now.
    CheckNow {
        #[serde(default)]
        services: Vec<String>,
    },
    /// Reload the running configuration file, or say what reloading
    /// `config` (or it) would change with `dry_run`.
    Reload {
        #[serde(default)]
        force: bool,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        config: Option<PathBuf>,
    },
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub message: String,
}

/// How the daemon loads a configuration for a reload (SIGHUP or the
/// socket): the file it runs and the backend it was started with.
#[derive(Clone)]
pub struct Reloader {
    pub path: PathBuf,
    pub backend: Option<BackendKind>,
    /// The configuration the daemon started with: backend settings only
    /// take effect at a restart, which a reload says.
    pub started_with: Arc<Config>,
    pub commands: mpsc::Sender<EngineCommand>,
}

/// Loads a config and builds its checks; problems in one message.
pub fn load(
    path: &Path,
    backend: Option<BackendKind>,
) -> Result<(Config, Vec<PreparedService>), String> {
    let config = config::load(path, backend).map_err(|e| e.to_string())?;
    let prepared = engine::prepare(&config.services).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {e}", config.source.display()))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok((config, prepared))
}

impl Reloader {
    /// Loads `config` (the running file when `None`) and hands it to the
    /// engine; the answer says what changed or why nothing did.
    pub async fn reload(
        &self,
        force: bool,
        dry_run: bool,
        config: Option<PathBuf>,
    ) -> Result<String, String> {
        let path = config.unwrap_or_else(|| self.path.clone());
        let (config, prepared) = load(&path, self.backend)?;
        let mut notes = String::new();
        for warning in &config.warnings {
            tracing::warn!("{}: {warning}", config.source.display());
            notes.push_str(&format!("warning: {warning}\n"));
        }
        let backend_settings = |c: &Config| {
            (
                c.backend,
                c.exabgp.clone(),
                c.bird.clone(),
                c.native.clone(),
                c.peers.clone(),
                (c.router_id, c.local_address, c.local_asn),
                c.control.clone(),
            )
        };
        if backend_settings(&config) != backend_settings(&self.started_with) {
            let note = "backend and control settings changed; they take effect at the next restart (services, routes and attributes are applied now)";
            if !dry_run {
                tracing::warn!("{note}");
            }
            notes.push_str(note);
            notes.push('\n');
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(EngineCommand::Reload {
                config: Box::new(config),
                prepared,
                force,
                dry_run,
                reply: Some(reply),
            })
            .await
            .map_err(|_| "the engine is not running".to_string())?;
        let answer = answer
            .await
            .map_err(|_| "the engine stopped before answering".to_string())?;
        answer.map(|message| notes + &message)
    }
}

/// Listens on `path` (replacing a stale socket file) with permissions `mode`.
pub fn bind(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        // A daemon that answers there is running: do not steal its socket.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another anycastd answers there", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Serves the control socket until `shutdown`; removes the socket file then.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    reloader: Reloader,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut accept_failing = false;
    loop {
        // Waiting for a slot first keeps the rest in the kernel's backlog.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if accept_failing {
                        accept_failing = false;
                        tracing::info!("control socket accepts connections again");
                    }
                    stream
                }
                Err(e) => {
                    if !accept_failing {
                        accept_failing = true;
                        tracing::warn!(error = %e, "control socket cannot accept connections");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let reloader = reloader.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_one(stream, &reloader).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn serve_one(mut stream: UnixStream, reloader: &Reloader) -> std::io::Result<()> {
    let mut request = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
            if request.contains(&b'\n') || request.len() > MAX_REQUEST {
                break;
            }
        }
        std::io::Result::Ok(())
    };
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Err(_) => Response {
            ok: false,
            message: format!(
                "no request within {}",
                config::format_duration(REQUEST_TIMEOUT)
            ),
        },
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) if request.len() > MAX_REQUEST => Response {
            ok: false,
            message: format!("request longer than {MAX_REQUEST} bytes"),
        },
        Ok(Ok(())) => {
            let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
            match serde_json::from_slice::<Request>(line) {
                Err(e) => Response {
                    ok: false,
                    message: format!("not a request: {e}"),
                },
                Ok(request) => {
                    tracing::info!(?request, "control request");
                    let answer =
                        tokio::time::timeout(ANSWER_TIMEOUT, handle(request, reloader)).await;
                    match answer {
                        Ok(Ok(message)) => Response { ok: true, message },
                        Ok(Err(message)) => Response { ok: false, message },
                        Err(_) => Response {
                            ok: false,
                            message: "the daemon did not answer in time".into(),
                        },
                    }
                }
            }
        }
    };
    let mut text = serde_json::to_vec(&response).unwrap_or_default();
    text.push(b'\n');
    tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(&text))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

async fn handle(request: Request, reloader: &Reloader) -> Result<String, String> {
    let engine_gone = || "the engine is not running".to_string();
    let (reply, answer) = oneshot::channel();
    let command = match request {
        Request::Reload {
            force,
            dry_run,
            config,
        } => return reloader.reload(force, dry_run, config).await,
        Request::Drain { services } => EngineCommand::Drain {
            services,
            source: DrainSource::Cli,
            on: true,
            reply: Some(reply),
        },
        Request::Undrain { services } => EngineCommand::Drain {
            services,
            source: DrainSource::Cli,
            on: false,
            reply: Some(reply),
        },
        Request::CheckNow { services } => EngineCommand::CheckNow { services, reply },
    };
    reloader
        .commands
        .send(command)
        .await
        .map_err(|_| engine_gone())?;
    answer.await.map_err(|_| engine_gone())?
}

/// Why a client got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to {path}: {error} (is anycastd running with control.socket set? pass --socket PATH)"
    )]
    Connect {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not an answer from anycastd: {error}")]
    Answer { path: PathBuf, error: String },
}

/// Sends `request` to the daemon at `path` and waits for its answer.
pub fn request(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let io = |error| ClientError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|error| ClientError::Connect {
            path: path.to_path_buf(),
            error,
        })?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT + REQUEST_TIMEOUT))
        .map_err(io)?;
    let mut text = serde_json::to_vec(request).unwrap_or_default();
    text.push(b'\n');
    stream.write_all(&text).map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_REQUEST as u64 * 16)
        .read_to_end(&mut answer)
        .map_err(io)?;
    serde_json::from_slice(&answer).map_err(|e| ClientError::Answer {
        path: path.to_path_buf(),
        error: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_plain_json_with_a_verb() {
        let text = serde_json::to_string(&Request::CheckNow {
            services: vec!["dns".into()],
        })
        .unwrap();
        assert_eq!(text, r#"{"verb":"check-now","services":["dns"]}"#);
        let drain: Request = serde_json::from_str(r#"{"verb":"drain"}"#).unwrap();
        assert_eq!(drain, Request::Drain { services: vec![] });
        assert!(serde_json::from_str::<Request>(r#"{"verb":"explode"}"#).is_err());
    }
}
