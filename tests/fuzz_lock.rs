//! The fuzz targets (`fuzz/`, a crate of their own) must exercise the code
//! that ships: every package both lockfiles name is pinned at the same
//! versions. To bring them back in step: `cp Cargo.lock fuzz/Cargo.lock`,
//! then `cargo metadata --manifest-path fuzz/Cargo.toml > /dev/null`
//! (adds libfuzzer-sys and drops what the fuzz crate does not use).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Package name → versions, from a Cargo.lock.
fn versions(lockfile: &str) -> BTreeMap<String, BTreeSet<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(lockfile);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{lockfile}: {e}"));
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            package
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string)
        };
        if let (Some(name), Some(version)) = (field("name"), field("version")) {
            out.entry(name).or_default().insert(version);
        }
    }
    out
}

#[test]
fn fuzz_lockfile_pins_the_versions_that_ship() {
    let shipped = versions("Cargo.lock");
    let fuzzed = versions("fuzz/Cargo.lock");
    assert!(shipped.contains_key("serde-saphyr") && fuzzed.contains_key("libfuzzer-sys"));
    let differ: Vec<String> = shipped
        .iter()
        .filter_map(|(name, v)| {
            let f = fuzzed.get(name)?;
            (f != v).then(|| format!("{name}: ships {v:?}, fuzzed {f:?}"))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "fuzz/Cargo.lock is out of step (see this file's header):\n{}",
        differ.join("\n")
    );
}
