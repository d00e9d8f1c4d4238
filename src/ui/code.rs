//! The Code tab: a file tree of a fragment and one file, highlighted on the server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

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

/// How many highlighted files are kept; past it the cache starts over.
const CACHE_ENTRIES: usize = 512;

/// Highlighted HTML by a digest of the file's name and content: the same file is shown again
/// and again (every version holds it, every viewer opens it), and highlighting is the costly part.
fn cache() -> &'static Mutex<HashMap<[u8; 32], Arc<str>>> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Arc<str>>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Highlights `content` as HTML with CSS classes (cached by content). The generator escapes
/// the text itself, so the result is safe to embed; anything it cannot handle falls back to
/// plain escaping.
pub fn highlight(path: &str, content: &str) -> Markup {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(content.as_bytes());
    let key: [u8; 32] = hasher.finalize().into();
    let lock = || {
        cache()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(html) = lock().get(&key) {
        return PreEscaped(html.to_string());
    }
    let html = highlight_uncached(path, content).into_string();
    let mut cached = lock();
    if cached.len() >= CACHE_ENTRIES {
        cached.clear();
    }
    cached.insert(key, Arc::from(html.as_str()));
    PreEscaped(html)
}

fn highlight_uncached(path: &str, content: &str) -> Markup {
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
    with_data: bool,
    changes: Option<super::diff::ChangesEntry>,
) -> Markup {
    let root = tree(files.keys().map(String::as_str));
    let showing_changes = changes.as_ref().is_some_and(|entry| entry.shown);
    let selected = selected.filter(|_| !showing_changes);
    let shown = selected.and_then(|path| files.get(path).map(|content| (path, content)));
    html! {
        div.code {
            nav.file-tree aria-label="Files" {
                @if let Some(entry) = &changes { (super::diff::entry(entry)) }
                (folder_view(&root, link, selected))
                details.clone {
                    summary { "Clone with git" }
                    p { "Every version is a commit, tagged v1, v2, …" }
                    code #clone-command data-clone-path={ "/git/" (project_id) ".git" } { "git clone /git/" (project_id) ".git" }
                    button type="button" data-copy-from="clone-command" { "Copy" }
                    h4 { "Push and pull" }
                    div #remote-panel hx-get={ "/projects/" (project_id) "/remote" } hx-trigger="toggle from:closest details once" hx-swap="outerHTML" {
                        p.hint { "Loading the remote…" }
                    }
                }
            }
            div.file-view {
                @if let Some(entry) = changes.as_ref().filter(|entry| entry.shown) {
                    (super::diff::changes_view(entry.changes))
                } @else if let Some((path, content)) = shown {
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
                        @if with_data {
                            a.button href={ "/projects/" (project_id) "/fragments/" (fragment_message) "/download?data=1" } download
                                title="The app with the data this version was made with (db/data.sql)" { "Zip with data" }
                        }
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
    fn a_file_seen_again_comes_from_the_cache_with_the_same_html() {
        let content = format!("const unique = \"{}\";\n", uuid::Uuid::now_v7());
        let first = highlight("lib/a.ts", &content).into_string();
        let key_count = cache().lock().unwrap().len();
        let again = highlight("lib/a.ts", &content).into_string();
        assert_eq!(first, again);
        assert_eq!(cache().lock().unwrap().len(), key_count, "no new entry");
        // The same text under another name may highlight differently: its own entry.
        let other = highlight("lib/a.json", &content).into_string();
        assert_ne!(first, other);
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
