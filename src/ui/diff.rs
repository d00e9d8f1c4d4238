//! A version's changes in the Code tab: each file added, changed or removed, with its
//! unified diff, lines coloured by what happened to them.

use maud::{Markup, html};

use crate::diff::{Changes, FileDiff, FileStatus, LineKind};

/// The Code tab's entry for the changes, above the file tree.
pub struct ChangesEntry<'a> {
    pub changes: &'a Changes,
    /// The URL that shows them.
    pub link: String,
    /// Whether they are what the file view shows now.
    pub shown: bool,
}

/// The button above the file tree: "Changes in v3 · +12 −4".
pub fn entry(entry: &ChangesEntry) -> Markup {
    let changes = entry.changes;
    html! {
        button.changes-link type="button" hx-get=(entry.link) hx-target="#workspace" hx-swap="outerHTML"
            aria-current=[entry.shown.then_some("true")] {
            "Changes in v" (changes.version)
            " " span.diff-count { span.added { "+" (changes.added()) } " " span.removed { "−" (changes.removed()) } }
        }
    }
}

/// The file view's body when the changes are shown.
pub fn changes_view(changes: &Changes) -> Markup {
    html! {
        div.changes aria-label={ "Changes in v" (changes.version) } {
            p.hint {
                @match changes.previous {
                    Some(previous) => { "Against v" (previous) ": " }
                    None => { "The first version: " }
                }
                (changes.files.len()) " file" @if changes.files.len() != 1 { "s" } " "
                @if changes.previous.is_some() { "changed" } @else { "added" }
            }
            @if changes.files.is_empty() {
                p.placeholder { "No file changed in this version." }
            }
            ul.changed-files {
                @for file in &changes.files {
                    li {
                        a href={ "#diff-" (anchor(&file.path)) } { (status_label(file.status)) " " code { (file.path) } }
                        " " (counts(file))
                    }
                }
            }
            @for file in &changes.files { (file_view(file)) }
        }
    }
}

fn file_view(file: &FileDiff) -> Markup {
    html! {
        section.file-diff id={ "diff-" (anchor(&file.path)) } {
            h3 { span class={ "status " (status_class(file.status)) } { (status_label(file.status)) } " " code { (file.path) } " " (counts(file)) }
            table.diff role="presentation" {
                @for hunk in &file.hunks {
                    tr.diff-hunk { td colspan="3" { (hunk.header) } }
                    @for line in &hunk.lines {
                        tr class=(line_class(line.kind)) {
                            td.line-number { @if let Some(old) = line.old { (old) } }
                            td.line-number { @if let Some(new) = line.new { (new) } }
                            td.line-text { span.sign aria-hidden="true" { (sign(line.kind)) } (line.text) }
                        }
                    }
                }
            }
        }
    }
}

fn counts(file: &FileDiff) -> Markup {
    html! { span.diff-count { span.added { "+" (file.added) } " " span.removed { "−" (file.removed) } } }
}

fn status_label(status: FileStatus) -> &'static str {
    match status {
        FileStatus::Added => "added",
        FileStatus::Changed => "changed",
        FileStatus::Removed => "removed",
    }
}

fn status_class(status: FileStatus) -> &'static str {
    match status {
        FileStatus::Added => "is-added",
        FileStatus::Changed => "is-changed",
        FileStatus::Removed => "is-removed",
    }
}

fn line_class(kind: LineKind) -> &'static str {
    match kind {
        LineKind::Context => "diff-context",
        LineKind::Added => "diff-added",
        LineKind::Removed => "diff-removed",
    }
}

fn sign(kind: LineKind) -> &'static str {
    match kind {
        LineKind::Context => " ",
        LineKind::Added => "+",
        LineKind::Removed => "-",
    }
}

/// An id for a path: letters and digits kept, anything else a dash.
fn anchor(path: &str) -> String {
    path.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_view_escapes_the_code_and_marks_each_line() {
        let before = BTreeMap::from([("app/page.tsx".to_string(), "<h1>Old</h1>\n".to_string())]);
        let after = BTreeMap::from([("app/page.tsx".to_string(), "<h1>New</h1>\n".to_string())]);
        let changes = Changes {
            version: 2,
            previous: Some(1),
            files: crate::diff::files(&before, &after),
        };
        let html = changes_view(&changes).into_string();
        assert!(html.contains("Against v1"), "{html}");
        assert!(html.contains("&lt;h1&gt;New&lt;/h1&gt;"), "{html}");
        assert!(!html.contains("<h1>New"), "{html}");
        assert!(html.contains(r#"<tr class="diff-added">"#), "{html}");
        assert!(html.contains(r#"<tr class="diff-removed">"#), "{html}");
        assert!(html.contains(r##"href="#diff-app-page-tsx""##), "{html}");
    }
}
