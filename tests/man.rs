//! The man pages and shell completions in the tree: generated ones must match
//! what `anycastd generate` writes now, both pages must lint clean, the
//! configuration page must name every config key, and its examples must load.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{anycastd_bin, scratch};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `anycastd generate WHAT DIR` and returns the files it wrote.
fn generate(what: &str, dir: &Path) -> Vec<PathBuf> {
    let out = Command::new(anycastd_bin())
        .args(["generate", what])
        .arg(dir)
        .output()
        .expect("run anycastd generate");
    assert!(
        out.status.success(),
        "anycastd generate {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// Fails unless each generated file equals its copy in `tree_dir`.
fn assert_up_to_date(what: &str, tree_dir: &str) {
    let dir = scratch();
    let written = generate(what, dir.path());
    assert!(
        !written.is_empty(),
        "anycastd generate {what} wrote nothing"
    );
    for fresh in written {
        let name = fresh.file_name().unwrap().to_string_lossy().into_owned();
        let in_tree = repo(tree_dir).join(&name);
        let want = std::fs::read(&fresh).unwrap();
        let have = std::fs::read(&in_tree).unwrap_or_default();
        assert!(
            want == have,
            "{tree_dir}/{name} is out of date: run `cargo run -- generate {what} {tree_dir}/` to update it"
        );
    }
}

#[test]
fn man_page_is_up_to_date() {
    assert_up_to_date("man", "man");
}

#[test]
fn completions_are_up_to_date() {
    assert_up_to_date("completions", "completions");
}

fn tool(name: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: install the Debian package {package}"
    );
}

#[test]
fn man_pages_lint_clean() {
    tool("mandoc", "mandoc");
    tool("groff", "groff-base");
    for page in ["man/anycastd.8", "man/anycastd.yaml.5"] {
        let path = repo(page);
        assert!(path.exists(), "{page} is missing");
        // STYLE messages (long source lines, mostly) are not warnings.
        let out = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .arg(&path)
            .output()
            .expect("run mandoc");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "mandoc -T lint on {page}:\n{text}"
        );
        let out = Command::new("groff")
            .args(["-ww", "-z", "-man"])
            .arg(&path)
            .output()
            .expect("run groff");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "groff -ww -z -man on {page}:\n{text}"
        );
    }
}

/// The page's text with roff escapes taken out, for searching.
fn plain(roff: &str) -> String {
    roff.replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
}

#[test]
fn config_page_names_every_config_key() {
    let page = plain(&std::fs::read_to_string(repo("man/anycastd.yaml.5")).unwrap());
    let model = std::fs::read_to_string(repo("src/config/model.rs")).unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    let mut rename: Option<String> = None;
    for line in model.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#[serde(rename = \"") {
            rename = rest.split('"').next().map(String::from);
            continue;
        }
        let Some(field) = line
            .strip_prefix("pub ")
            .and_then(|rest| rest.split_once(':'))
            .map(|(name, _)| name)
            .filter(|name| {
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            })
        else {
            continue;
        };
        let key = rename.take().unwrap_or_else(|| field.to_string());
        checked += 1;
        let named = page
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == key);
        if !named {
            missing.push(key);
        }
    }
    assert!(
        checked > 50,
        "read only {checked} keys from src/config/model.rs"
    );
    assert!(
        missing.is_empty(),
        "man/anycastd.yaml.5 does not mention these keys of src/config/model.rs: {missing:?}"
    );
}

#[test]
fn config_page_examples_load() {
    let page = std::fs::read_to_string(repo("man/anycastd.yaml.5")).unwrap();
    let dir = scratch();
    let mut examples = 0;
    for block in page.split(".nf\n").skip(1) {
        let Some((example, _)) = block.split_once(".fi\n") else {
            continue;
        };
        if !example.starts_with("announcer:") {
            continue;
        }
        examples += 1;
        let file = dir.path().join(format!("example{examples}.yaml"));
        std::fs::write(&file, example.replace("\\-", "-")).unwrap();
        let out = Command::new(anycastd_bin())
            .arg("-c")
            .arg(&file)
            .arg("validate")
            .env_remove("CONFIG_PATH")
            .output()
            .expect("run anycastd validate");
        assert!(
            out.status.success(),
            "example {examples} of man/anycastd.yaml.5 does not load:\n{}\n{}",
            example,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(examples >= 3, "found only {examples} examples");
}
