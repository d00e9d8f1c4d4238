//! The README and `examples/` stay true: every setting the code reads is in the README's
//! configuration table, every setting an example uses is a real one, and the README's test
//! command is the one CI runs.

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `CODEFLUX_…` and `E2B_…` names in `text` (letters, digits and underscores after the prefix).
fn setting_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["CODEFLUX_", "E2B_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let preceded_by_word = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let name = tail[..end].trim_end_matches('_');
            if !preceded_by_word && name.len() > prefix.len() {
                names.insert(name.to_string());
            }
            rest = &tail[end.max(1)..];
        }
    }
    names
}

fn files_under(folder: &Path, extension: &str, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, extension, found);
        } else if path.extension().is_some_and(|ext| ext == extension) {
            found.push(path);
        }
    }
}

/// The README's configuration table (from its heading to the next one).
fn configuration_table() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("## Configuration")
        .expect("the README has a configuration section");
    let end = readme[start + 3..]
        .find("\n## ")
        .map_or(readme.len(), |end| start + 3 + end);
    readme[start..end].to_string()
}

#[test]
fn every_setting_the_code_reads_is_documented() {
    let mut sources = Vec::new();
    files_under(&root().join("src"), "rs", &mut sources);
    let mut read = BTreeSet::new();
    for source in sources {
        let text = std::fs::read_to_string(&source).unwrap();
        // Only quoted names are settings; prose in comments may abbreviate.
        for name in setting_names(&text) {
            if text.contains(&format!("\"{name}\"")) {
                read.insert(name);
            }
        }
    }
    assert!(read.contains("CODEFLUX_LISTEN"), "the scan works: {read:?}");
    let documented = setting_names(&configuration_table());
    let missing: Vec<_> = read.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "read by the code but not in the README's configuration table: {missing:?}"
    );
}

#[test]
fn the_examples_use_only_real_settings() {
    let documented = setting_names(&configuration_table());
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for name in setting_names(&text) {
            assert!(
                documented.contains(&name),
                "{} uses {name}, which the README does not document",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "the examples set their variables");
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        readme.contains("```sh\nscripts/test\n```"),
        "the README's test command"
    );
    assert!(ci.contains("exec scripts/test"), "{ci}");
    let script = std::fs::read_to_string(root().join("scripts/test")).unwrap();
    assert!(script.contains("cargo nextest run"));
}
