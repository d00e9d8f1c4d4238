//! The Code tab: a file tree of a fragment and one file, highlighted on the server.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use maud::{Markup, PreEscaped, html};
use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;
use uuid::Uuid;

/// Files larger than this are shown without highlighting (it is quadratic-ish on huge lines).
const MAX_HIGHLIGHT_BYTES: usize = 200_000;

fn syntaxes() -> &'static SyntaxSet {
    static SYNTAXES: OnceLock<SyntaxSet> = OnceLock::new();
    SYNTAXES.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// Highlights `content` as HTML with CSS classes. The generator escapes the text itself,
/// so the result is safe to embed; anything it cannot handle falls back to plain escaping.
pub fn highlight(path: &str, content: &str) -> Markup {
    let syntaxes = syntaxes();
    let extension = path.rsplit('.').next().unwrap_or_default();
    // The bundled grammars have no TypeScript; JavaScript's covers most of TS and JSX.
    let extension = match extension {
        "ts" | "tsx" | "jsx" | "mjs" | "cjs" => "js",
        "jsonc" => "json",
        other => other,
    };
    let Some(syntax) = syntaxes.find_syntax_by_extension(extension) else {
        return html! { (content) };
    };
    if content.len() > MAX_HIGHLIGHT_BYTES {
        return html! { (content) };
    }
    let mut generator = ClassedHTMLGenerator::new_with_class_style(
        syntax,
        syntaxes,
        ClassStyle::SpacedPrefixed { prefix: "hl-" },
    );
    for line in LinesWithEndings::from(content) {
        if generator
            .parse_html_for_line_which_includes_newline(line)
            .is_err()
        {
            return html! { (content) };
        }
    }
    PreEscaped(generator.finalize())
}

/// A folder of the tree: sub-folders and files (full paths).
#[derive(Default)]
struct Folder<'a> {
    folders: BTreeMap<&'a str, Folder<'a>>,
    files: Vec<(&'a str, &'a str)>,
}

fn tree<'a>(paths: impl Iterator<Item = &'a str>) -> Folder<'a> {
    let mut root = Folder::default();
    for path in paths {
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().unwrap_or(path);
        let mut folder = &mut root;
        for part in parts {
            folder = folder.folders.entry(part).or_default();
        }
        folder.files.push((name, path));
    }
    root
}

fn folder_view(folder: &Folder, link: &dyn Fn(&str) -> String, selected: Option<&str>) -> Markup {
    html! {
        ul role="group" {
            @for (name, sub) in &folder.folders {
                li { div.folder { "▾ " (name) "/" } (folder_view(sub, link, selected)) }
            }
            @for (name, path) in &folder.files {
                li {
                    button type="button" hx-get=(link(path)) hx-target="#workspace" hx-swap="outerHTML"
                        aria-current=[(selected == Some(*path)).then_some("true")] title=(path) { (name) }
                }
            }
        }
    }
}

/// The Code tab's body. `link(path)` is the URL that shows a file.
pub fn code_view(
    project_id: Uuid,
    fragment_message: Uuid,
    files: &BTreeMap<String, String>,
    selected: Option<&str>,
    link: &dyn Fn(&str) -> String,
) -> Markup {
    let root = tree(files.keys().map(String::as_str));
    let shown = selected.and_then(|path| files.get(path).map(|content| (path, content)));
    html! {
        div.code {
            nav.file-tree aria-label="Files" { (folder_view(&root, link, selected)) }
            div.file-view {
                @if let Some((path, content)) = shown {
                    div.crumbs {
                        nav aria-label="Breadcrumbs" {
                            @for (index, part) in path.split('/').enumerate() {
                                @if index > 0 { " / " }
                                span { (part) }
                            }
                        }
                        span.spacer {}
                        button type="button" data-copy-from="file-content" { "Copy" }
                        a.button href={ "/projects/" (project_id) "/fragments/" (fragment_message) "/download" } download { "Download zip" }
                    }
                    pre #file-content tabindex="0" aria-label={ "Contents of " (path) } { code { (highlight(path, content)) } }
                } @else {
                    p.placeholder { "Pick a file on the left." }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlighting_escapes_markup() {
        let html =
            highlight("app/page.tsx", "const x = \"<script>alert(1)</script>\";\n").into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("hl-"), "classes are emitted: {html}");
        let plain = highlight("notes.unknown-ext", "<b>x</b>").into_string();
        assert_eq!(plain, "&lt;b&gt;x&lt;/b&gt;");
    }

    #[test]
    fn files_are_grouped_into_folders() {
        let root = tree(
            [
                "app/page.tsx",
                "app/layout.tsx",
                "components/ui/button.tsx",
                "README.md",
            ]
            .into_iter(),
        );
        assert_eq!(root.files, vec![("README.md", "README.md")]);
        assert_eq!(root.folders["app"].files.len(), 2);
        assert_eq!(
            root.folders["components"].folders["ui"].files[0].1,
            "components/ui/button.tsx"
        );
    }
}
