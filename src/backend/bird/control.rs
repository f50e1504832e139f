//! BIRD's control socket: a pure reply parser (`doc/reply_codes`) and a small
//! client that sends `configure` and reads the verdict.
//!
//! A reply is one or more lines of `DDDD-text` (more follow) or `DDDD text`
//! (last line); a continuation may also start with a single space; lines
//! starting with `+` are asynchronous notices and belong to no reply.
//!
//! What BIRD sends is bounded on our side: lines of at most [`MAX_LINE`]
//! bytes (a longer one is a protocol error), at most [`MAX_REPLY_LINES`]
//! kept per reply, and the whole exchange within `reconfigure_timeout`.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::backend::lines::{BoundedLines, InputLine};

/// The longest line from BIRD we read.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines kept per reply: the first ones and the last (which carries the
/// verdict's message); more only count.
pub const MAX_REPLY_LINES: usize = 64;

/// One line from BIRD, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyLine {
    /// `DDDD-text` (`last == false`) or `DDDD text` (`last == true`).
    Coded { code: u16, last: bool, text: String },
    /// ` text`: continues the previous code.
    Continuation(String),
    /// `+text`: an asynchronous notice.
    Notice(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparsable line from BIRD: {0:?}")]
pub struct ParseError(pub String);

pub fn parse_line(line: &str) -> Result<ReplyLine, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(text) = line.strip_prefix('+') {
        return Ok(ReplyLine::Notice(text.to_string()));
    }
    if let Some(text) = line.strip_prefix(' ') {
        return Ok(ReplyLine::Continuation(text.to_string()));
    }
    let bytes = line.as_bytes();
    if bytes.len() < 5 || !bytes[..4].iter().all(u8::is_ascii_digit) {
        return Err(ParseError(line.to_string()));
    }
    let code = line[..4]
        .parse()
        .map_err(|_| ParseError(line.to_string()))?;
    let last = match bytes[4] {
        b' ' => true,
        b'-' => false,
        _ => return Err(ParseError(line.to_string())),
    };
    Ok(ReplyLine::Coded {
        code,
        last,
        text: line[5..].to_string(),
    })
}

/// A whole reply: the final line's code and every line's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The text BIRD put on the line carrying the final code.
    pub fn message(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }
}

/// Collects lines until a reply is complete.
#[derive(Debug, Default)]
pub struct ReplyAssembler {
    lines: Vec<String>,
}

impl ReplyAssembler {
    /// Keeps `text`; past [`MAX_REPLY_LINES`] it replaces the last kept line.
    fn keep(&mut self, text: String) {
        if self.lines.len() == MAX_REPLY_LINES {
            self.lines.pop();
        }
        self.lines.push(text);
    }

    /// Feeds one line; returns the reply when this line ends it.
    pub fn feed(&mut self, line: &str) -> Result<Option<Reply>, ParseError> {
        match parse_line(line)? {
            ReplyLine::Notice(_) => Ok(None),
            ReplyLine::Continuation(text) => {
                self.keep(text);
                Ok(None)
            }
            ReplyLine::Coded { code, last, text } => {
                self.keep(text);
                if !last {
                    return Ok(None);
                }
                Ok(Some(Reply {
                    code,
                    lines: std::mem::take(&mut self.lines),
                }))
            }
        }
    }
}

/// What BIRD made of `configure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigureVerdict {
    /// 0003 Reconfigured, 0004 Reconfiguration in progress (BIRD 3),
    /// 0005 Reconfiguration already in progress, queueing new config.
    Accepted(String),
    /// Anything else: BIRD's message, e.g. `8002 file:line:col syntax error`.
    Refused { code: u16, message: String },
}

pub fn judge_configure(reply: &Reply) -> ConfigureVerdict {
    match reply.code {
        3..=5 => ConfigureVerdict::Accepted(reply.message().to_string()),
        code => ConfigureVerdict::Refused {
            code,
            message: reply.message().to_string(),
        },
    }
}

/// Why asking BIRD failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// BIRD is not there (not running, wrong socket): keep the file, retry.
    #[error("cannot reach BIRD at {socket}: {reason}")]
    Unreachable { socket: String, reason: String },
    /// BIRD answered and refused the configuration.
    #[error("BIRD refused the configuration ({code:04}): {message}")]
    Refused { code: u16, message: String },
    #[error("BIRD did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer from BIRD: {0}")]
    Protocol(String),
}

/// Connects, reads the greeting, sends `configure`, returns BIRD's message.
pub async fn configure(socket: &Path, timeout: Duration) -> Result<String, ControlError> {
    tokio::time::timeout(timeout, configure_inner(socket))
        .await
        .map_err(|_| ControlError::Timeout(timeout))?
}

async fn configure_inner(socket: &Path) -> Result<String, ControlError> {
    let unreachable = |e: std::io::Error| ControlError::Unreachable {
        socket: socket.display().to_string(),
        reason: e.to_string(),
    };
    let stream = UnixStream::connect(socket).await.map_err(unreachable)?;
    let (read, mut write) = stream.into_split();
    let mut lines = BoundedLines::new(read, MAX_LINE);
    let mut next_reply = async || -> Result<Reply, ControlError> {
        let mut assembler = ReplyAssembler::default();
        loop {
            let line = match lines.next().await.map_err(unreachable)? {
                Some(InputLine::Text(line)) => line,
                Some(InputLine::TooLong) => {
                    return Err(ControlError::Protocol(format!(
                        "a line longer than {MAX_LINE} bytes"
                    )));
                }
                None => {
                    return Err(ControlError::Protocol("BIRD closed the connection".into()));
                }
            };
            if let Some(reply) = assembler
                .feed(&line)
                .map_err(|e| ControlError::Protocol(e.to_string()))?
            {
                return Ok(reply);
            }
        }
    };
    let greeting = next_reply().await?;
    if greeting.code != 1 {
        return Err(ControlError::Protocol(format!(
            "expected the 0001 greeting, got {:04} {}",
            greeting.code,
            greeting.message()
        )));
    }
    write.write_all(b"configure\n").await.map_err(unreachable)?;
    let reply = next_reply().await?;
    match judge_configure(&reply) {
        ConfigureVerdict::Accepted(message) => Ok(message),
        ConfigureVerdict::Refused { code, message } => Err(ControlError::Refused { code, message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_of(lines: &[&str]) -> Reply {
        let mut a = ReplyAssembler::default();
        for (i, line) in lines.iter().enumerate() {
            let got = a.feed(line).unwrap();
            if i + 1 < lines.len() {
                assert_eq!(got, None, "reply ended early at {line:?}");
            } else {
                return got.expect("reply should end at the last line");
            }
        }
        unreachable!()
    }

    #[test]
    fn a_flood_of_continuation_lines_keeps_the_first_and_the_last() {
        let mut a = ReplyAssembler::default();
        for i in 0..10_000 {
            assert_eq!(a.feed(&format!("1002-line {i}")).unwrap(), None);
        }
        let reply = a.feed("8002 the verdict").unwrap().unwrap();
        assert_eq!(reply.lines.len(), MAX_REPLY_LINES);
        assert_eq!(reply.lines[0], "line 0");
        assert_eq!(reply.message(), "the verdict");
    }

    #[test]
    fn classifies_lines() {
        assert_eq!(
            parse_line("0001 BIRD 2.0.12 ready.\n"),
            Ok(ReplyLine::Coded {
                code: 1,
                last: true,
                text: "BIRD 2.0.12 ready.".into()
            })
        );
        assert_eq!(
            parse_line("0002-Reading configuration from /etc/bird.conf"),
            Ok(ReplyLine::Coded {
                code: 2,
                last: false,
                text: "Reading configuration from /etc/bird.conf".into()
            })
        );
        assert_eq!(
            parse_line(" more"),
            Ok(ReplyLine::Continuation("more".into()))
        );
        assert_eq!(
            parse_line("+Config timeout expired, starting undo"),
            Ok(ReplyLine::Notice(
                "Config timeout expired, starting undo".into()
            ))
        );
        assert!(parse_line("hello").is_err());
        assert!(parse_line("0003").is_err());
        assert!(parse_line("0003x").is_err());
    }

    #[test]
    fn success_codes_of_bird_2_and_3() {
        for (lines, message) in [
            (
                &[
                    "0002-Reading configuration from /etc/bird.conf",
                    "0003 Reconfigured",
                ][..],
                "Reconfigured",
            ),
            (
                &[
                    "0002-Reading configuration from /etc/bird.conf",
                    "0004 Reconfiguration in progress",
                ][..],
                "Reconfiguration in progress",
            ),
            (
                &["0005 Reconfiguration already in progress, queueing new config"][..],
                "Reconfiguration already in progress, queueing new config",
            ),
        ] {
            assert_eq!(
                judge_configure(&reply_of(lines)),
                ConfigureVerdict::Accepted(message.into())
            );
        }
    }

    #[test]
    fn failures_surface_birds_own_message() {
        let reply = reply_of(&[
            "0002-Reading configuration from /etc/bird.conf",
            "8002 /etc/bird.conf:12:3 syntax error, unexpected CF_SYM_UNDEFINED",
        ]);
        assert_eq!(reply.lines.len(), 2);
        assert_eq!(
            judge_configure(&reply),
            ConfigureVerdict::Refused {
                code: 8002,
                message: "/etc/bird.conf:12:3 syntax error, unexpected CF_SYM_UNDEFINED".into()
            }
        );
        for (line, code) in [
            ("8007 Access denied", 8007),
            ("9001 Parse error", 9001),
            ("0016 Access restricted", 16),
            ("0006 Reconfiguration ignored, shutting down", 6),
            ("0019 Nothing to do", 19),
            ("0020 Configuration OK", 20),
        ] {
            assert!(matches!(
                judge_configure(&reply_of(&[line])),
                ConfigureVerdict::Refused { code: c, .. } if c == code
            ));
        }
    }

    #[test]
    fn multi_line_replies_with_continuations_and_notices() {
        let reply = reply_of(&[
            "+Config timeout expired, starting undo",
            "0002-Reading configuration from /etc/bird.conf",
            " still reading",
            "0018 Reconfiguration confirmed",
        ]);
        assert_eq!(reply.code, 18);
        assert_eq!(
            reply.lines,
            [
                "Reading configuration from /etc/bird.conf",
                "still reading",
                "Reconfiguration confirmed"
            ]
        );
        for (line, code) in [
            ("0017 Reconfiguration unqueued", 17),
            ("0021 Undo requested", 21),
            ("0022 Undo scheduled", 22),
        ] {
            assert_eq!(reply_of(&[line]).code, code);
        }
    }

    #[tokio::test]
    async fn unreachable_socket_is_reported_as_such() {
        let err = configure(Path::new("/nonexistent/bird.ctl"), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::Unreachable { .. }), "{err}");
    }
}
