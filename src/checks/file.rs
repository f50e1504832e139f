//! `file`: a passive input for services that judge themselves. Healthy while
//! the file exists, holds `contains` in its first [`FILE_READ_MAX_BYTES`]
//! and, with `max_age`, was modified less than `max_age` ago.
//!
//! No shell and no exec: the check only stats and reads, on the blocking
//! pool, so a file on a hung mount never stalls the async workers (the
//! engine's timeout ends the attempt; the blocked read is left behind, and
//! later attempts fail at once until it returns, so a check never holds more
//! than one blocking thread).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::tcp::{contains, shown};
use super::{AttemptFuture, Check};
use crate::config::format_duration;
use crate::config::model::FileSpec;

/// What the check reads of the file at most, looking for `contains`.
pub const FILE_READ_MAX_BYTES: usize = 64 * 1024;

pub struct FileCheck {
    path: String,
    contains: Option<Vec<u8>>,
    max_age: Option<Duration>,
    /// Set while a look at the file runs on the blocking pool. A look that
    /// outlived its attempt (a hung mount) is not joined by another: one
    /// stuck thread per check at most.
    busy: Arc<AtomicBool>,
}

/// Clears `busy` when the look ends, however it ends.
struct Looking(Arc<AtomicBool>);

impl Drop for Looking {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl FileCheck {
    pub fn new(spec: &FileSpec) -> FileCheck {
        FileCheck {
            path: spec.path.clone(),
            contains: spec.contains.as_ref().map(|s| s.as_bytes().to_vec()),
            max_age: spec.max_age.map(|d| d.get()),
            busy: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Check for FileCheck {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            if self.busy.swap(true, Ordering::AcqRel) {
                return Err(format!(
                    "{}: the previous look at it has not returned (hung file system?)",
                    self.path
                ));
            }
            let looking = Looking(self.busy.clone());
            let path = self.path.clone();
            let contains = self.contains.clone();
            let max_age = self.max_age;
            tokio::task::spawn_blocking(move || {
                let _looking = looking;
                judge(
                    Path::new(&path),
                    contains.as_deref(),
                    max_age,
                    SystemTime::now(),
                )
            })
            .await
            .map_err(|e| format!("{}: {e}", self.path))?
        })
    }
}

/// The verdict on `path` at `now`: existence, then age, then content.
fn judge(
    path: &Path,
    word: Option<&[u8]>,
    max_age: Option<Duration>,
    now: SystemTime,
) -> Result<(), String> {
    let shown_path = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown_path} does not exist"),
        _ => format!("{shown_path}: {e}"),
    })?;
    if metadata.is_dir() {
        return Err(format!("{shown_path} is a directory, expected a file"));
    }
    if let Some(max_age) = max_age {
        let modified = metadata
            .modified()
            .map_err(|e| format!("{shown_path}: no modification time: {e}"))?;
        // A modification time in the future counts as just now.
        let age = now.duration_since(modified).unwrap_or_default();
        if age > max_age {
            return Err(format!(
                "{shown_path} is too old: modified {} ago, max_age {}",
                format_duration(Duration::from_secs(age.as_secs())),
                format_duration(max_age)
            ));
        }
    }
    if let Some(word) = word {
        let mut content =
            Vec::with_capacity(metadata.len().min(FILE_READ_MAX_BYTES as u64) as usize);
        std::fs::File::open(path)
            .and_then(|f| f.take(FILE_READ_MAX_BYTES as u64).read_to_end(&mut content))
            .map_err(|e| format!("cannot read {shown_path}: {e}"))?;
        if !contains(&content, word) {
            let within = if content.len() >= FILE_READ_MAX_BYTES {
                format!("its first {FILE_READ_MAX_BYTES} bytes")
            } else {
                format!("its {} bytes", content.len())
            };
            return Err(format!(
                "{shown_path}: no \"{}\" in {within}: \"{}\"",
                shown(word),
                shown(&content)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exists_contains_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let now = SystemTime::now();
        assert_eq!(
            judge(&path, None, None, now),
            Err(format!("{} does not exist", path.display()))
        );
        std::fs::write(&path, "state: up\n").unwrap();
        assert_eq!(judge(&path, None, None, now), Ok(()));
        assert_eq!(judge(&path, Some(b"up"), None, now), Ok(()));
        assert_eq!(
            judge(&path, Some(b"ready"), None, now),
            Err(format!(
                "{}: no \"ready\" in its 10 bytes: \"state: up\\n\"",
                path.display()
            ))
        );
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(now - Duration::from_secs(90)).unwrap();
        assert_eq!(
            judge(&path, None, Some(Duration::from_secs(60)), now),
            Err(format!(
                "{} is too old: modified 1m30s ago, max_age 1m0s",
                path.display()
            ))
        );
        assert_eq!(
            judge(&path, None, Some(Duration::from_secs(120)), now),
            Ok(())
        );
        assert_eq!(
            judge(dir.path(), None, None, now),
            Err(format!(
                "{} is a directory, expected a file",
                dir.path().display()
            ))
        );
    }

    #[tokio::test]
    async fn a_look_still_running_is_not_joined_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x").unwrap();
        let check = FileCheck::new(&FileSpec {
            path: path.to_str().unwrap().into(),
            contains: None,
            max_age: None,
        });
        assert_eq!(check.attempt().await, Ok(()));
        check.busy.store(true, Ordering::Release);
        let reason = check.attempt().await.unwrap_err();
        assert!(
            reason.ends_with("has not returned (hung file system?)"),
            "{reason}"
        );
        check.busy.store(false, Ordering::Release);
        assert_eq!(check.attempt().await, Ok(()));
    }

    #[test]
    fn reads_at_most_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let mut content = vec![b'x'; FILE_READ_MAX_BYTES];
        content.extend_from_slice(b"needle");
        std::fs::write(&path, &content).unwrap();
        let reason = judge(&path, Some(b"needle"), None, SystemTime::now()).unwrap_err();
        assert!(
            reason.contains(&format!("in its first {FILE_READ_MAX_BYTES} bytes")),
            "{reason}"
        );
    }
}
