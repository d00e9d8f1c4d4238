//! What changed between two sets of files (a version and the one before it, a file before
//! and after an edit): files added, changed and removed, each with its lines added and
//! removed and its hunks, as a unified diff.

use std::collections::BTreeMap;

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

/// Lines of unchanged context around each change.
const CONTEXT_LINES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Added,
    Changed,
    Removed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    Context,
    Added,
    Removed,
}

/// One line of a hunk, with its numbers in the old and the new file (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub kind: LineKind,
    pub old: Option<usize>,
    pub new: Option<usize>,
    /// Without its line break.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hunk {
    /// `@@ -12,7 +12,8 @@`
    pub header: String,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub status: FileStatus,
    pub added: usize,
    pub removed: usize,
    pub hunks: Vec<Hunk>,
}

impl FileDiff {
    /// The file's unified diff (`--- a/…`, `+++ b/…`, hunks), as `git diff` prints it.
    pub fn unified(&self) -> String {
        let old = match self.status {
            FileStatus::Added => "/dev/null".to_string(),
            _ => format!("a/{}", self.path),
        };
        let new = match self.status {
            FileStatus::Removed => "/dev/null".to_string(),
            _ => format!("b/{}", self.path),
        };
        let mut text = format!("--- {old}\n+++ {new}\n");
        for hunk in &self.hunks {
            text.push_str(&hunk.header);
            text.push('\n');
            for line in &hunk.lines {
                text.push(match line.kind {
                    LineKind::Context => ' ',
                    LineKind::Added => '+',
                    LineKind::Removed => '-',
                });
                text.push_str(&line.text);
                text.push('\n');
            }
        }
        text
    }
}

/// What a version changed against the one before it (`previous`; none for the first).
#[derive(Debug, Clone, Serialize)]
pub struct Changes {
    pub version: u32,
    pub previous: Option<u32>,
    pub files: Vec<FileDiff>,
}

impl Changes {
    pub fn added(&self) -> usize {
        self.files.iter().map(|file| file.added).sum()
    }

    pub fn removed(&self) -> usize {
        self.files.iter().map(|file| file.removed).sum()
    }
}

/// Every file that differs between `before` and `after`, by path.
pub fn files(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<FileDiff> {
    let mut paths: Vec<&String> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (status, old, new) = match (before.get(path), after.get(path)) {
                (None, Some(new)) => (FileStatus::Added, "", new.as_str()),
                (Some(old), None) => (FileStatus::Removed, old.as_str(), ""),
                (Some(old), Some(new)) if old != new => {
                    (FileStatus::Changed, old.as_str(), new.as_str())
                }
                _ => return None,
            };
            Some(file(path, status, old, new))
        })
        .collect()
}

/// How many lines `after` adds to `before` and removes from it.
pub fn line_changes(before: &str, after: &str) -> (usize, usize) {
    let diff = TextDiff::from_lines(before, after);
    diff.iter_all_changes()
        .fold((0, 0), |(added, removed), change| match change.tag() {
            ChangeTag::Insert => (added + 1, removed),
            ChangeTag::Delete => (added, removed + 1),
            ChangeTag::Equal => (added, removed),
        })
}

fn file(path: &str, status: FileStatus, old: &str, new: &str) -> FileDiff {
    let diff = TextDiff::from_lines(old, new);
    let mut added = 0;
    let mut removed = 0;
    let mut hunks = Vec::new();
    for group in diff.grouped_ops(CONTEXT_LINES) {
        let mut lines = Vec::new();
        for op in &group {
            for change in diff.iter_changes(op) {
                let kind = match change.tag() {
                    ChangeTag::Equal => LineKind::Context,
                    ChangeTag::Insert => {
                        added += 1;
                        LineKind::Added
                    }
                    ChangeTag::Delete => {
                        removed += 1;
                        LineKind::Removed
                    }
                };
                lines.push(Line {
                    kind,
                    old: change.old_index().map(|index| index + 1),
                    new: change.new_index().map(|index| index + 1),
                    text: change
                        .value()
                        .trim_end_matches('\n')
                        .trim_end_matches('\r')
                        .to_string(),
                });
            }
        }
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old_range = first.old_range().start..last.old_range().end;
        let new_range = first.new_range().start..last.new_range().end;
        hunks.push(Hunk {
            header: format!(
                "@@ -{} +{} @@",
                range_text(old_range.start, old_range.len()),
                range_text(new_range.start, new_range.len())
            ),
            lines,
        });
    }
    FileDiff {
        path: path.to_string(),
        status,
        added,
        removed,
        hunks,
    }
}

/// A hunk range as unified diffs write it: `start,len`, with an empty range's start one
/// before the place it stands for.
fn range_text(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{len}", start + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_of(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(path, content)| (path.to_string(), content.to_string()))
            .collect()
    }

    #[test]
    fn added_changed_and_removed_files_are_told_apart_and_the_same_ones_left_out() {
        let before = files_of(&[
            ("app/page.tsx", "a\nb\nc\n"),
            ("lib/old.ts", "gone\n"),
            ("same.ts", "x\n"),
        ]);
        let after = files_of(&[
            ("app/page.tsx", "a\nB\nc\nd\n"),
            ("lib/new.ts", "one\ntwo\n"),
            ("same.ts", "x\n"),
        ]);
        let diffs = files(&before, &after);
        let summary: Vec<(&str, FileStatus, usize, usize)> = diffs
            .iter()
            .map(|diff| (diff.path.as_str(), diff.status, diff.added, diff.removed))
            .collect();
        assert_eq!(
            summary,
            [
                ("app/page.tsx", FileStatus::Changed, 2, 1),
                ("lib/new.ts", FileStatus::Added, 2, 0),
                ("lib/old.ts", FileStatus::Removed, 0, 1),
            ]
        );
        assert_eq!(
            diffs[0].unified(),
            "--- a/app/page.tsx\n+++ b/app/page.tsx\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n"
        );
        assert_eq!(
            diffs[1].unified(),
            "--- /dev/null\n+++ b/lib/new.ts\n@@ -0,0 +1,2 @@\n+one\n+two\n"
        );
        assert_eq!(
            diffs[2].unified(),
            "--- a/lib/old.ts\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"
        );
    }

    #[test]
    fn far_apart_changes_are_separate_hunks_with_their_line_numbers() {
        let old: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        let new = old
            .replace("line 2\n", "line two\n")
            .replace("line 25\n", "line twenty-five\n");
        let diff = &files(&files_of(&[("f.txt", &old)]), &files_of(&[("f.txt", &new)]))[0];
        let headers: Vec<&str> = diff.hunks.iter().map(|hunk| hunk.header.as_str()).collect();
        assert_eq!(headers, ["@@ -1,5 +1,5 @@", "@@ -22,7 +22,7 @@"]);
        let changed = diff.hunks[1]
            .lines
            .iter()
            .find(|line| line.kind == LineKind::Added)
            .unwrap();
        assert_eq!((changed.old, changed.new), (None, Some(25)));
        assert_eq!(changed.text, "line twenty-five");
    }

    #[test]
    fn line_changes_count_what_an_edit_adds_and_removes() {
        assert_eq!(line_changes("a\nb\n", "a\nc\nd\n"), (2, 1));
        assert_eq!(line_changes("same\n", "same\n"), (0, 0));
    }
}
