//! contrib/container: no container engine runs on the test machines, so this
//! checks what would break the image without building it: the final stage is
//! distroless/cc as a non-root user with the config at /config.yaml, the
//! binary needs no shared library that image lacks, and it runs as that
//! user (uid 65532, no home, no shell).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/container")
        .join(path)
}

/// The Containerfile's instructions (continuations joined), comments dropped.
fn instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(contrib("Containerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (word, rest) = l.trim().split_once(char::is_whitespace).unwrap_or((&l, ""));
            (word.to_uppercase(), rest.trim().to_string())
        })
        .collect()
}

#[test]
fn final_stage_is_distroless_and_unprivileged() {
    let all = instructions();
    let stages: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (word, _))| word == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "a multi-stage build: {all:?}");
    let last = &all[*stages.last().unwrap()..];
    let values = |word: &str| -> Vec<&str> {
        last.iter()
            .filter(|(w, _)| w == word)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert!(
        values("FROM")[0].starts_with("gcr.io/distroless/cc-debian12"),
        "final image: {:?}",
        values("FROM")
    );
    assert_eq!(
        values("USER"),
        ["nonroot"],
        "runs as distroless' non-root user"
    );
    assert!(
        values("RUN").is_empty(),
        "the final stage has no shell to RUN with"
    );
    assert_eq!(
        values("COPY"),
        ["--from=build /out/anycastd /usr/bin/anycastd"],
        "only the binary goes into the final image"
    );
    assert!(
        values("ENV")
            .iter()
            .any(|v| v.contains("CONFIG_PATH=/config.yaml")),
        "config at /config.yaml: {:?}",
        values("ENV")
    );
    assert_eq!(values("EXPOSE"), ["9180"], "the metrics port");
    assert_eq!(values("ENTRYPOINT"), [r#"["/usr/bin/anycastd"]"#]);
    // The build stage installs what the final stage copies.
    let build = &all[..*stages.last().unwrap()];
    assert!(
        build
            .iter()
            .any(|(w, v)| w == "RUN" && v.contains("--locked") && v.contains("/out/anycastd")),
        "the build stage builds with --locked into /out/anycastd: {build:?}"
    );
    let ignore = std::fs::read_to_string(contrib("Containerfile.dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "the build context leaves out target/"
    );
}

#[test]
fn binary_needs_only_what_distroless_cc_has() {
    require(&[("ldd", "libc-bin (part of every Debian)")]);
    let out = Command::new("ldd").arg(anycastd_bin()).output().unwrap();
    assert!(out.status.success(), "ldd failed: {out:?}");
    // distroless/cc-debian12 ships glibc and libgcc_s, nothing else.
    let allowed = [
        "linux-vdso.so",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "ld-linux",
    ];
    let libs = String::from_utf8_lossy(&out.stdout);
    let strangers: Vec<&str> = libs
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !allowed.iter().any(|a| l.contains(a)))
        .collect();
    assert!(
        strangers.is_empty(),
        "libraries the final image lacks: {strangers:?}"
    );
}

#[test]
fn runs_as_the_images_user_with_config_at_the_default_path() {
    require(&[("setpriv", "util-linux")]);
    let dir = scratch();
    let config = dir.path().join("config.yaml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/exabgp.yaml"),
        &config,
    )
    .unwrap();
    // Readable by anyone, as a mounted config is; the directory too.
    for path in [dir.path(), config.as_path()] {
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65532", "--regid=65532", "--clear-groups"])
        .arg(anycastd_bin())
        .arg("validate")
        .env_clear()
        .env("CONFIG_PATH", &config)
        .env("LOG_LEVEL", "info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "anycastd validate as uid 65532 failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
