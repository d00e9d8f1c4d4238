//! The project page: the conversation on the left, the preview and code on the right.

use maud::{Markup, html};
use uuid::Uuid;

use super::{code, home::status_badge, progress};
use crate::events::Event;
use crate::store::{
    BrowserCheck, Fragment, MessageType, ProjectStatus, Role, SelectedElement, VerificationStatus,
};
use crate::store::{MAX_PROMPT_CHARS, MessageView};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Preview,
    Code,
    Data,
}

/// What the right-hand side shows.
pub struct Workspace<'a> {
    pub project_id: Uuid,
    pub fragment: Option<&'a Fragment>,
    pub preview_url: &'a str,
    /// What the frame and the Open button load: the URL itself, or a signed link to it when
    /// access needs a token.
    pub preview_link: &'a str,
    pub tab: Tab,
    /// The file open in the Code tab.
    pub file: Option<&'a str>,
    /// The shown version's number, and the newest version's number.
    pub version: Option<(u32, u32)>,
    /// Rows in the data the shown version was made with, when that was kept.
    pub version_rows: Option<u64>,
    /// What the shown version changed (the Code tab), and whether the file view shows it.
    pub changes: Option<&'a crate::diff::Changes>,
    pub show_changes: bool,
}

/// The number of the version `fragment` belongs to, and the newest version's number.
pub fn version_of(messages: &[MessageView], fragment: Option<&Fragment>) -> Option<(u32, u32)> {
    let newest = messages.iter().filter_map(|view| view.version).max()?;
    let shown = messages.iter().find_map(|view| {
        let own = view.fragment.as_ref()?;
        (Some(own.id) == fragment.map(|fragment| fragment.id))
            .then_some(view.version)
            .flatten()
    })?;
    Some((shown, newest))
}

impl Workspace<'_> {
    fn link(&self, tab: Tab, file: Option<&str>) -> String {
        let mut url = format!(
            "/projects/{}/workspace?tab={}",
            self.project_id,
            match tab {
                Tab::Preview => "preview",
                Tab::Code => "code",
                Tab::Data => "data",
            }
        );
        if let Some(fragment) = self.fragment {
            url.push_str(&format!("&fragment={}", fragment.message_id));
        }
        if let Some(file) = file {
            url.push_str("&file=");
            url.push_str(&encode_query(file));
        }
        url
    }
}

/// Percent-encodes a query value (paths hold `/`, `.` and sometimes spaces or `&`).
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub struct ProjectPage<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub status: ProjectStatus,
    pub messages: &'a [MessageView],
    pub events: &'a [Event],
    pub workspace: Workspace<'a>,
    /// The publish panel (see `ui::publish`).
    pub publish_panel: Markup,
    /// What all its answers spent.
    pub spent: crate::store::TokenUsage,
}

pub fn page(view: &ProjectPage) -> Markup {
    let busy = view.status != ProjectStatus::Idle;
    let selected = view.workspace.fragment.map(|fragment| fragment.message_id);
    html! {
        div.project-page {
            section.chat aria-label="Conversation" {
                header {
                    h1 { (view.name) }
                    (status(view.status, false))
                    span.spacer {}
                    @if view.spent.model_calls > 0 {
                        small.spent title="What every answer of this project spent" {
                            (tokens(view.spent.total())) " tokens"
                            @if let Some(cost) = view.spent.cost_usd { " · " (dollars(cost)) }
                        }
                    }
                    button.danger type="button" hx-delete={ "/projects/" (view.id) }
                        hx-confirm={ "Delete " (view.name) " with all its versions, its sandbox and its published app (with the app's data)?" } { "Delete" }
                }
                (view.publish_panel)
                (conversation(view.id, view.messages, selected, false))
                (progress::panel(view.id, view.events, busy, false))
                (super::quick_edit::slot(view.id))
                (follow_up_form(view.id, "", None, &[]))
            }
            (workspace(&view.workspace, false))
        }
    }
}

pub fn status(status: ProjectStatus, out_of_band: bool) -> Markup {
    html! { span #project-status hx-swap-oob=[out_of_band.then_some("true")] { (status_badge(status)) } }
}

pub fn conversation(
    project_id: Uuid,
    messages: &[MessageView],
    selected: Option<Uuid>,
    out_of_band: bool,
) -> Markup {
    html! {
        div #conversation .conversation hx-swap-oob=[out_of_band.then_some("true")] role="log" aria-label="Messages" {
            @for view in messages {
                (message(project_id, view, selected))
            }
        }
    }
}

fn message(project_id: Uuid, view: &MessageView, selected: Option<Uuid>) -> Markup {
    let message = &view.message;
    let (role_class, who) = match message.role {
        Role::User => ("user", "You"),
        Role::Assistant => ("assistant", "CodeFlux"),
    };
    let error = message.kind == MessageType::Error;
    let stopped = message.kind == MessageType::Stopped;
    html! {
        article.message.(role_class).error[error].stopped[stopped] id={ "message-" (message.id) } {
            span.who { (who) }
            (message.content)
            @if crate::jobs::offers_install_fix(message) {
                p { button type="button" hx-post={ "/projects/" (project_id) "/messages/" (message.id) "/fix" } hx-swap="none" { "Fix the install" } }
            }
            @if !message.selected.is_empty() {
                ul.picked.sent aria-label="Selected elements" {
                    @for element in &message.selected { li.picked-item { code { (element.label()) } } }
                }
            }
            @if !message.images.is_empty() {
                div.thumbs {
                    @for index in 0..message.images.len() {
                        @let url = format!("/projects/{project_id}/messages/{}/images/{index}", message.id);
                        a href=(url) target="_blank" rel="noopener" {
                            img src=(url) alt={ "Attached image " (index + 1) } loading="lazy";
                        }
                    }
                }
            }
            @if let Some(fragment) = &view.fragment {
                button.fragment-card type="button"
                    hx-get={ "/projects/" (project_id) "/workspace?fragment=" (fragment.message_id) }
                    hx-target="#workspace" hx-swap="outerHTML"
                    aria-pressed=(if selected == Some(fragment.message_id) { "true" } else { "false" }) {
                    span {
                        strong { @if let Some(version) = view.version { span.version { "v" (version) } " " } (fragment.title) }
                        br;
                        small { (fragment.files.len()) @if fragment.files.len() == 1 { " file" } @else { " files" } }
                    }
                    span aria-hidden="true" { "→" }
                }
            }
            @if let Some(verification) = view.fragment.as_ref().and_then(|fragment| fragment.verification.as_ref()) {
                @match verification.status {
                    VerificationStatus::Passed => p.check.passed { "✓ Checked: compiles and renders" },
                    VerificationStatus::Failed => details.check.failed {
                        summary { "✗ Still failing" }
                        pre { (verification.errors.join("\n\n")) }
                    },
                }
                @if let Some(browser) = &verification.browser {
                    (browser_check(project_id, view.version, browser))
                }
            }
            @if let Some(usage) = &message.usage {
                small.usage title="Tokens spent on this answer" {
                    (usage.model_calls) " model calls · " (tokens(usage.prompt_tokens + usage.completion_tokens)) " tokens"
                    @if let Some(cost) = usage.cost_usd { " · " (dollars(cost)) }
                }
                @if usage.calls.iter().any(|call| call.id.is_some() || call.request_id.is_some()) {
                    details.call-ids {
                        summary { "Request ids" }
                        pre id={ "call-ids-" (message.id) } {
                            @for call in &usage.calls {
                                (call.id.as_deref().unwrap_or("-"))
                                @if let Some(request_id) = &call.request_id { "  x-request-id: " (request_id) }
                                "\n"
                            }
                        }
                        button type="button" data-copy-from={ "call-ids-" (message.id) } { "Copy" }
                    }
                }
            }
        }
    }
}

/// "Checked in a browser: 3 pages, 14 clicks, no errors", with a thumbnail of each page.
fn browser_check(project_id: Uuid, version: Option<u32>, browser: &BrowserCheck) -> Markup {
    let class = if browser.unavailable.is_some() {
        "unavailable"
    } else if browser.problems() == 0 {
        "passed"
    } else {
        "failed"
    };
    html! {
        div.browser-check.(class) {
            p { (browser.describe()) }
            @if let Some(version) = version {
                ul.screenshots {
                    @for (index, page) in browser.pages.iter().enumerate().filter(|(_, page)| page.screenshot) {
                        @let url = format!("/projects/{project_id}/versions/{version}/screenshots/{index}");
                        li {
                            a href=(url) target="_blank" rel="noopener" title={ (page.route) ": " (page.clicks) " clicks, " (page.problems) " problems" } {
                                img src=(url) alt={ "Screenshot of " (page.route) " in version " (version) } loading="lazy" width="160" height="100";
                                span { (page.route) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// 950 → "950", 12_345 → "12.3k".
/// `$0.0123`, `$1.42`: costs under a dollar keep their figures.
pub fn dollars(cost: f64) -> String {
    if cost < 1.0 {
        format!("${cost:.4}")
    } else {
        format!("${cost:.2}")
    }
}

fn tokens(count: u64) -> String {
    if count < 1000 {
        count.to_string()
    } else {
        format!("{:.1}k", count as f64 / 1000.0)
    }
}

pub fn follow_up_form(
    project_id: Uuid,
    value: &str,
    error: Option<&str>,
    selected: &[SelectedElement],
) -> Markup {
    html! {
        form #follow-up .follow-up action={ "/projects/" (project_id) "/messages" } method="post"
            enctype="multipart/form-data" hx-encoding="multipart/form-data"
            hx-post={ "/projects/" (project_id) "/messages" } hx-swap="outerHTML" hx-disabled-elt="find button" {
            label.sr-only for="follow-up-prompt" { "Ask for a change" }
            ul.picked #selected-elements aria-label="Selected elements" {
                @for element in selected { (selected_chip(element)) }
            }
            textarea #follow-up-prompt name="prompt" placeholder="Ask for a change, e.g. add a dark mode toggle…"
                maxlength=(MAX_PROMPT_CHARS) required aria-invalid=[error.map(|_| "true")] { (value) }
            @if let Some(error) = error { p.error-text role="alert" { (error) } }
            (super::home::image_picker("follow-up"))
            div.form-row {
                span.hint { "Ctrl / ⌘ + Enter to send" }
                button.primary type="submit" { "Send" }
            }
        }
    }
}

/// A picked element in the follow-up box; app.js builds the same markup for new picks.
fn selected_chip(element: &SelectedElement) -> Markup {
    html! {
        li.picked-item data-loc=(element.tag()) title=[element.text.as_deref()] {
            input type="hidden" name="selected" value=(element.form_value());
            code { (element.label()) }
            button.remove-chip type="button" aria-label={ "Remove " (element.label()) } { "×" }
        }
    }
}

pub fn workspace(view: &Workspace, out_of_band: bool) -> Markup {
    let tab = |tab: Tab, label: &str| {
        html! {
            button type="button" role="tab" id={ "tab-" (label.to_lowercase()) } aria-controls="workspace-panel"
                aria-selected=(if view.tab == tab { "true" } else { "false" })
                hx-get=(view.link(tab, view.file)) hx-target="#workspace" hx-swap="outerHTML" { (label) }
        }
    };
    html! {
        section #workspace .workspace aria-label="Workspace" hx-swap-oob=[out_of_band.then_some("true")] {
            div.tabs role="tablist" {
                (tab(Tab::Preview, "Preview"))
                (tab(Tab::Code, "Code"))
                (tab(Tab::Data, "Data"))
                span.spacer {}
                @if view.tab == Tab::Preview && view.fragment.is_some() {
                    span #select-hint .hint role="status" {}
                    button #select-toggle type="button" aria-pressed="false" data-select-frame="preview-frame"
                        title="Click an element in the preview to point your next change at it (Esc to stop)" {
                        svg width="14" height="14" viewBox="0 0 16 16" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linejoin="round" {
                            path d="M3 2l10 5-4.5 1.5L7 13z" {}
                        }
                        "Select"
                    }
                    span.url title=(view.preview_url) { (view.preview_url) }
                    button type="button" data-refresh-frame="preview-frame" aria-label="Reload the preview" { "↻" }
                    button type="button" data-copy=(view.preview_url) { "Copy URL" }
                    a.button href=(view.preview_link) target="_blank" rel="noopener" { "Open ↗" }
                }
            }
            @if let (Some(fragment), Some((shown, newest))) = (view.fragment, view.version) {
                @if shown < newest {
                    div.version-bar role="status" {
                        span { "You are looking at version " (shown) " of " (newest) ". The preview always shows the newest version." }
                        button.primary type="button"
                            hx-post={ "/projects/" (view.project_id) "/versions/" (fragment.id) "/restore" }
                            hx-swap="none"
                            hx-confirm={ "Make version " (shown) "'s code the newest version? The app's current data stays. Nothing newer is lost." } {
                            "Restore v" (shown)
                        }
                        @if let Some(rows) = view.version_rows {
                            button type="button"
                                hx-post={ "/projects/" (view.project_id) "/versions/" (fragment.id) "/restore?data=1" }
                                hx-swap="none"
                                hx-confirm={ "Make version " (shown) " the newest version and bring back its data (" (rows) " rows)? The current data is replaced; a snapshot of it is kept." } {
                                "Restore v" (shown) " with its data"
                            }
                        }
                        button type="button"
                            hx-post={ "/projects/" (view.project_id) "/publish" } hx-vals={ "{\"version\": " (shown) "}" }
                            hx-target="#publish-panel" hx-swap="outerHTML"
                            hx-confirm={ "Publish version " (shown) " at the app's address? Its published data stays." } {
                            "Publish v" (shown)
                        }
                    }
                }
            }
            div.panel #workspace-panel role="tabpanel" {
                @match (view.fragment, view.tab) {
                    (None, _) => p.placeholder { "Your app appears here as soon as the agent has built a first version." },
                    (Some(_), Tab::Preview) => iframe #preview-frame src=(view.preview_link) title="App preview"
                        sandbox="allow-scripts allow-same-origin allow-forms allow-popups allow-modals" {},
                    (Some(_), Tab::Data) => (super::data::loading(view.project_id)),
                    (Some(fragment), Tab::Code) => (code::code_view(
                        view.project_id,
                        fragment.message_id,
                        &fragment.files,
                        view.file.or_else(|| fragment.files.keys().find(|path| path.ends_with("page.tsx")).map(String::as_str)),
                        &|path| view.link(Tab::Code, Some(path)),
                        view.version_rows.is_some(),
                        view.changes.map(|changes| super::diff::ChangesEntry {
                            changes,
                            link: format!("{}&changes=1", view.link(Tab::Code, None)),
                            shown: view.show_changes,
                        }),
                    )),
                }
            }
        }
    }
}
