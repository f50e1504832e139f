//! Every configuration in examples/ passes `anycastd validate` (which parses
//! it and builds every check and the backend, without network I/O), names
//! the backend its file name promises, and loads without warnings unless it
//! is the Go anycastd's README example, kept with its `multihope_ttl` typo.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::anycastd_bin;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let files = examples();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "bird-prefix-set.yaml",
        "bird-static.yaml",
        "exabgp.yaml",
        "native.yaml",
        "original-readme.yaml",
        "quickstart.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "examples/{expected} is missing"
        );
    }
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let out = Command::new(anycastd_bin())
            .arg("-c")
            .arg(file)
            .arg("validate")
            .output()
            .expect("run anycastd validate");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "anycastd validate -c examples/{name}:\n{stdout}{stderr}"
        );
        assert!(stdout.contains(": ok: "), "examples/{name}: {stdout}");
        let backend = if name.starts_with("bird") {
            Some("bird")
        } else if name.starts_with("exabgp") {
            Some("exabgp")
        } else if name.starts_with("native") {
            Some("native")
        } else {
            None
        };
        if let Some(backend) = backend {
            assert!(
                stdout.contains(&format!("backend {backend},")),
                "examples/{name} should use the {backend} backend: {stdout}"
            );
        }
        if name == "original-readme.yaml" {
            assert!(stderr.contains("multihope_ttl"), "{stderr}");
        } else {
            assert!(
                !stderr.contains("warn"),
                "examples/{name} loads with warnings:\n{stderr}"
            );
        }
    }
}
