//! The publish panel on a project page, and the published apps on the home page.

use maud::{Markup, html};
use uuid::Uuid;

use crate::publish::{AppView, PublishStatus};

/// What the panel needs besides the record.
pub struct PanelView<'a> {
    pub project_id: Uuid,
    pub app: Option<&'a AppView>,
    /// The URL that opens the app (signed for a private app when sign-in is on).
    pub open_link: Option<&'a str>,
    /// The newest version, which the Publish button publishes.
    pub newest: Option<u32>,
    /// Why publishing cannot work here.
    pub engine_problem: Option<&'a str>,
    /// Sign-in is on, so an app can be private.
    pub can_be_private: bool,
    /// A problem with the last request (a taken name, say).
    pub problem: Option<&'a str>,
}

pub fn panel(view: &PanelView) -> Markup {
    let building = view
        .app
        .is_some_and(|app| app.published.status == PublishStatus::Building);
    html! {
        div #publish-panel .publish-panel aria-label="Publishing"
            hx-get=[building.then(|| format!("/projects/{}/publish", view.project_id))]
            hx-trigger=[building.then_some("every 2s")] hx-swap="outerHTML" {
            @if let Some(problem) = view.problem {
                p.error role="alert" { (problem) }
            }
            @match view.app {
                None => (unpublished(view)),
                Some(app) => (published(view, app)),
            }
        }
    }
}

fn unpublished(view: &PanelView) -> Markup {
    html! {
        @if let Some(problem) = view.engine_problem {
            p.hint { "Publishing needs Docker: " (problem) }
        } @else if let Some(newest) = view.newest {
            form.publish-form hx-post={ "/projects/" (view.project_id) "/publish" } hx-target="#publish-panel" hx-swap="outerHTML" {
                input type="hidden" name="version" value=(newest);
                label { "Data "
                    select name="data" {
                        option value="copy" selected { "a copy of v" (newest) "'s data" }
                        option value="empty" { "empty" }
                    }
                }
                @if view.can_be_private {
                    label { input type="checkbox" name="private" value="true"; " Private (needs sign-in)" }
                }
                button.primary type="submit" { "Publish v" (newest) }
            }
        }
    }
}

fn published(view: &PanelView, app: &AppView) -> Markup {
    let record = &app.published;
    html! {
        div.publish-status {
            @match record.status {
                PublishStatus::Building => {
                    span.badge.running role="status" { "Publishing v" (record.building.unwrap_or_default()) "…" }
                    @if let Some(step) = &record.step { span.hint { (step) } }
                }
                PublishStatus::Running => span.badge.ok { "Published" },
                PublishStatus::Failed => span.badge.error { "Publish failed" },
            }
            @if let Some(version) = record.version {
                a href=(view.open_link.unwrap_or(&app.url)) target="_blank" rel="noopener" { (app.url) }
                span.hint { "v" (version) @if let Some(uptime) = app.uptime_secs { " · up " (duration(uptime)) } @if record.private { " · private" } }
            }
        }
        @if record.status == PublishStatus::Failed {
            @if let Some(error) = &record.error {
                p.error { (first_line(error)) @if record.version.is_some() { " The published version keeps running." } }
            }
            @if let Some(log) = &record.log {
                details.publish-log {
                    summary { "Build log" }
                    pre { (log) }
                }
            }
            @if let Some(refusal) = &record.data_loss {
                ul.data-loss aria-label="What it would drop" {
                    @for loss in &refusal.losses {
                        li { code { (loss.what) } " · " (loss.rows_held()) " · in " code { (loss.migration) } }
                    }
                }
                form hx-post={ "/projects/" (view.project_id) "/publish" } hx-target="#publish-panel" hx-swap="outerHTML"
                    hx-confirm={ "Publish v" (refusal.version) " and drop what is listed? The published data is backed up first (Data tab, Published)." } {
                    input type="hidden" name="version" value=(refusal.version);
                    input type="hidden" name="accept_data_loss" value="true";
                    button.danger type="submit" { "Publish v" (refusal.version) " anyway" }
                }
            }
            @if record.log.is_some() {
                button type="button" hx-post={ "/projects/" (view.project_id) "/publish/fix" } hx-swap="none" { "Fix the build" }
            }
        }
        @if record.status != PublishStatus::Building {
            div.publish-actions {
                @if let Some(newest) = view.newest {
                    form hx-post={ "/projects/" (view.project_id) "/publish" } hx-target="#publish-panel" hx-swap="outerHTML" {
                        input type="hidden" name="version" value=(newest);
                        button.primary type="submit" {
                            @if record.version == Some(newest) { "Publish v" (newest) " again" } @else { "Publish v" (newest) }
                        }
                    }
                }
                form.publish-rename hx-post={ "/projects/" (view.project_id) "/publish/name" } hx-target="#publish-panel" hx-swap="outerHTML" {
                    label { "Name "
                        input name="name" value=(record.name) required pattern="[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
                            aria-label="App name" title="lowercase letters, digits and dashes";
                    }
                    button type="submit" { "Rename" }
                }
                button.danger type="button" hx-post={ "/projects/" (view.project_id) "/unpublish" } hx-target="#publish-panel" hx-swap="outerHTML"
                    hx-confirm={ "Stop and remove the published app at " (app.url) "? Its data is kept for the next publish." } { "Unpublish" }
            }
        }
    }
}

/// The published apps, for the home page.
pub fn apps_list(apps: &[AppView]) -> Markup {
    html! {
        @if !apps.is_empty() {
            section.published-apps aria-label="Published apps" {
                h2 { "Published apps" }
                table {
                    thead { tr { th { "App" } th { "Version" } th { "Address" } th { "Memory" } th { "Up" } } }
                    tbody {
                        @for app in apps {
                            tr {
                                td { a href={ "/projects/" (app.published.project_id) } { (app.published.name) } }
                                td { @if let Some(version) = app.published.version { "v" (version) } @else { "—" }
                                    @match app.published.status { PublishStatus::Building => " (publishing)", PublishStatus::Failed => " (last publish failed)", PublishStatus::Running => "" } }
                                td { a href=(app.url) target="_blank" rel="noopener" { (app.url) } }
                                td { @if let Some(bytes) = app.memory_bytes { (bytes / (1024 * 1024)) " MiB" } @else { "—" } }
                                td { @if let Some(uptime) = app.uptime_secs { (duration(uptime)) } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// `42 s`, `5 min`, `3 h`, `2 d`.
pub fn duration(seconds: i64) -> String {
    match seconds {
        ..60 => format!("{} s", seconds.max(0)),
        60..3600 => format!("{} min", seconds / 60),
        3600..86400 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86400),
    }
}
