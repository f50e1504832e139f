//! Configuration: reading the file, reporting errors with their key path, and
//! resolving the raw file shape into the [`Config`] the engine runs.
//!
//! YAML and JSON both go through one tree (`serde_json::Value`), as in the
//! original anycastd, so both formats accept and reject exactly the same.
//! Check specs are decoded per kind in a second step so that errors still
//! carry the full path (`services[0].checks[2].spec.timeout`).

pub mod duration;
pub mod model;
pub mod operate;
mod resolve;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use duration::{
    ConfigDuration, LongDuration, MAX_SECS as MAX_DURATION_SECS, format_duration, parse_duration,
};
pub use model::{BackendKind, BirdFormat, BirdRouteKind, CheckKind};
pub use operate::{ControlConfig, DrainConfig, MaxWithdraw, Profiles};
pub(crate) use resolve::split_host_port;
pub use resolve::{
    BfdSettings, BirdConfig, CheckConfig, CheckSpec, Config, ExabgpConfig, NativeConfig, NextHop,
    PeerConfig, ServiceConfig, Strategy,
};

/// One thing wrong with the config, at a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `services[0].checks[2].spec.timeout`; `.` is the root.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the config file: {error}")]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    /// The file name does not say YAML or JSON.
    #[error("{file}: unexpected file format `{extension}`: use .yaml, .yml or .json")]
    Format { file: PathBuf, extension: String },
    /// The text is not well-formed YAML/JSON.
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    /// Well-formed, but keys or values are wrong.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found, for tests and for `validate`.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn render_problems(file: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {p}", file.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which text format a file holds, chosen by its extension as the original did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn from_path(path: &Path) -> Result<Format, ConfigError> {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "yaml" | "yml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            _ => Err(ConfigError::Format {
                file: path.to_path_buf(),
                extension: if extension.is_empty() {
                    "(none)".into()
                } else {
                    format!(".{extension}")
                },
            }),
        }
    }
}

/// Reads and resolves the config file at `path`. `backend` (from `--backend`)
/// overrides `announcer.backend`, and decides which keys are required.
pub fn load(path: &Path, backend: Option<BackendKind>) -> Result<Config, ConfigError> {
    let format = Format::from_path(path)?;
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        file: path.to_path_buf(),
        error,
    })?;
    load_str(&text, format, path, backend)
}

/// Like [`load`], from text already read; `file` only names it in errors.
pub fn load_str(
    text: &str,
    format: Format,
    file: &Path,
    backend: Option<BackendKind>,
) -> Result<Config, ConfigError> {
    let tree = parse_tree(text, format, file).map_err(|message| ConfigError::Syntax {
        file: file.to_path_buf(),
        message,
    })?;
    let invalid = |problems| ConfigError::Invalid {
        file: file.to_path_buf(),
        problems,
    };
    let raw: model::RawConfig = decode(tree, "").map_err(|p| invalid(vec![p]))?;
    resolve::resolve(raw, file, backend).map_err(invalid)
}

/// The most YAML nodes (scalars, sequences, mappings) a config may hold. A
/// service with one check is about 14 nodes, so this is room for about
/// 300,000 services; the parser's default (250,000) stopped at about 17,800.
pub const YAML_MAX_NODES: usize = 5_000_000;

/// serde-saphyr's defaults, with the node and event budgets raised so large
/// generated configs load. The budgets still bound what a hostile file
/// (an alias bomb) can make us allocate.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    if let Some(budget) = options.budget.as_mut() {
        budget.max_nodes = YAML_MAX_NODES;
        budget.max_events = 4 * YAML_MAX_NODES;
        budget.max_total_scalar_bytes = 256 << 20;
    }
    options
}

fn parse_tree(text: &str, format: Format, file: &Path) -> Result<serde_json::Value, String> {
    let tree = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?,
        Format::Yaml => {
            if let Some((line, column)) = tab_in_indentation(text) {
                return Err(format!(
                    "invalid YAML at line {line}, column {column}: a tab in the indentation \
                     (YAML indents with spaces only)"
                ));
            }
            serde_saphyr::from_str_with_options::<serde_json::Value>(text, yaml_options())
                .map_err(|e| yaml_error(&e.to_string(), file))?
        }
    };
    if tree.is_null() {
        return Err("the config file is empty".into());
    }
    Ok(tree)
}

/// The first tab in a line's leading whitespace (1-based line and column).
/// The parser reports one where the scalar before it started, often on
/// the line above.
fn tab_in_indentation(text: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(at, line)| {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        line[..indent].find('\t').map(|column| (at + 1, column + 1))
    })
}

/// The parser's message in the operator's terms: the file's name instead
/// of `<input>`, the position said once, and the limit named when the
/// size budget was hit.
fn yaml_error(message: &str, file: &Path) -> String {
    let message = message.replace("<input>", &file.display().to_string());
    // "error: line L column C: WHAT at line L, column C\n --> ...": the
    // position is in the first words and in the snippet already.
    let message = match message.strip_prefix("error: ") {
        Some(rest) => match rest.split_once(": ") {
            Some((position, rest)) if position.starts_with("line ") => {
                let position = position.replace(" column", ", column");
                let (first, snippet) = rest.split_once('\n').unwrap_or((rest, ""));
                let first = first
                    .strip_suffix(&format!(" at {position}"))
                    .unwrap_or(first);
                format!("invalid YAML at {position}: {first}\n{snippet}")
                    .trim_end()
                    .to_string()
            }
            _ => format!("invalid YAML: {rest}"),
        },
        None => format!("invalid YAML: {message}"),
    };
    if message.contains("budget") {
        format!(
            "{message}\n(anycastd reads at most {YAML_MAX_NODES} YAML nodes, about 300,000 \
             services; JSON has no such limit)"
        )
    } else {
        message
    }
}

/// Decodes `value` into `T`, reporting the first error at its full key path.
/// `prefix` is the path of `value` itself within the file.
pub(crate) fn decode<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let inner = err.path().to_string();
        let path = join_path(prefix, if inner == "." { "" } else { &inner });
        describe_serde_error(path, &err.into_inner().to_string())
    })
}

pub(crate) fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, true) => ".".into(),
        (true, false) => rest.into(),
        (false, true) => prefix.into(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// Rewrites serde's messages into the operator's terms: a missing field is
/// reported at its own path, and an unknown key or value names the nearest
/// known one.
fn describe_serde_error(path: String, message: &str) -> Problem {
    let quoted = backticked(message);
    let problem = |path: String, message: String| Problem { path, message };
    let parent = if path == "." {
        String::new()
    } else {
        path.clone()
    };
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        return problem(join_path(&parent, field), "required key is missing".into());
    }
    if message.starts_with("unknown field `") {
        let unknown = quoted.first().cloned().unwrap_or_default();
        // serde_path_to_error already points at the offending key.
        let at = if path.ends_with(&unknown) {
            path.clone()
        } else {
            join_path(&parent, &unknown)
        };
        let allowed: Vec<&str> = quoted.iter().skip(1).map(String::as_str).collect();
        return problem(at, unknown_message("key", &unknown, &allowed));
    }
    if message.starts_with("unknown variant `") {
        let unknown = quoted.first().cloned().unwrap_or_default();
        let allowed: Vec<&str> = quoted.iter().skip(1).map(String::as_str).collect();
        return problem(path, unknown_message("value", &unknown, &allowed));
    }
    problem(path, message.to_string())
}

/// "unknown key `chek_interval`, did you mean `check_interval`? (expected one of ...)"
pub(crate) fn unknown_message(what: &str, unknown: &str, allowed: &[&str]) -> String {
    let mut message = format!("unknown {what} `{unknown}`");
    if let Some(best) = nearest(unknown, allowed) {
        message.push_str(&format!(", did you mean `{best}`?"));
    }
    if allowed.is_empty() {
        message.push_str(" (no keys are allowed here)");
    } else {
        let list = allowed
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        message.push_str(&format!(" (expected one of {list})"));
    }
    message
}

fn nearest<'a>(unknown: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|candidate| (strsim::jaro_winkler(unknown, candidate), *candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests;
