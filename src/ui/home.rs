//! The home page: the prompt box and the project list.

use maud::{Markup, html};
use uuid::Uuid;

use crate::store::MAX_PROMPT_CHARS;
use crate::store::ProjectStatus;
use crate::store::images::MAX_IMAGES;

pub const EXAMPLES: [&str; 4] = [
    "Build a habit tracker with streaks and a weekly overview",
    "Make a kanban board with drag-free columns: todo, doing, done",
    "Create a pomodoro timer with a task list and session stats",
    "Design a recipe book with search, tags and a shopping list",
];

pub struct ProjectRow<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub age: String,
    pub status: ProjectStatus,
    pub first_prompt: &'a str,
}

pub fn status_badge(status: ProjectStatus) -> Markup {
    let (class, label) = match status {
        ProjectStatus::Idle => ("idle", "ready"),
        ProjectStatus::Queued => ("queued", "queued"),
        ProjectStatus::Running => ("running", "building"),
    };
    html! { span.badge.(class) { (label) } }
}

/// Bringing an existing app in: a zip, or a git address (re-rendered with the reason when
/// the import is refused).
pub fn import_form(error: Option<&str>) -> Markup {
    html! {
        form #import-form .import-form hx-post="/projects/import" hx-encoding="multipart/form-data"
            hx-swap="outerHTML" hx-disabled-elt="find button" {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            label { "A zip of the app " input type="file" name="file" accept=".zip,application/zip"; }
            p.hint { "or a git repository:" }
            label { "Address " input type="url" name="git_url" placeholder="https://github.com/you/app.git"; }
            label { "Token " input type="password" name="git_token" autocomplete="off" placeholder="for a private repository"; }
            label { "Branch or tag " input type="text" name="git_ref" placeholder="the default branch"; }
            p.hint { "Next.js apps (13.4 to 16). node_modules, .git and .env files are left out; images and other binary files are not kept yet." }
            button type="submit" { "Import" }
        }
    }
}

/// The prompt form; re-rendered with the error when validation fails.
pub fn prompt_form(value: &str, error: Option<&str>) -> Markup {
    html! {
        form #prompt-form .prompt-form action="/projects" method="post" enctype="multipart/form-data"
            hx-post="/projects" hx-encoding="multipart/form-data" hx-swap="outerHTML" hx-disabled-elt="find button" {
            label.sr-only for="prompt" { "What do you want to build?" }
            textarea #prompt name="prompt" placeholder="Describe the app you want, e.g. a habit tracker with streaks…"
                maxlength=(MAX_PROMPT_CHARS) required
                aria-invalid=[error.map(|_| "true")] aria-describedby="prompt-hint prompt-error" { (value) }
            @if let Some(error) = error {
                p #prompt-error .error-text role="alert" { (error) }
            }
            (image_picker("prompt"))
            div.form-row {
                span #prompt-hint .hint { "Ctrl / ⌘ + Enter to build" }
                button.primary type="submit" { "Build it" }
            }
        }
    }
}

/// Images to go with a prompt: a file picker (drag-and-drop and paste onto the form add to it,
/// see app.js) and the list of what is attached.
pub fn image_picker(prefix: &str) -> Markup {
    html! {
        div.attach {
            label.attach-button for={ (prefix) "-images" } { "Attach images" }
            input.sr-only id={ (prefix) "-images" } type="file" name="images" multiple
                accept="image/png,image/jpeg,image/webp" aria-describedby={ (prefix) "-images-hint" };
            span.hint id={ (prefix) "-images-hint" } {
                "PNG, JPEG or WebP, up to " (MAX_IMAGES) " of 5 MB; drop or paste them here too"
            }
            ul.attached aria-live="polite" {}
        }
    }
}

/// Project rows plus the "load more" button for the next page.
pub fn project_rows(rows: &[ProjectRow], next: Option<Uuid>) -> Markup {
    html! {
        @for row in rows {
            li.project-row {
                a href={ "/projects/" (row.id) } {
                    span.name { (row.name) }
                    span { (status_badge(row.status)) " " span.age { (row.age) } }
                    span.first-prompt { (row.first_prompt) }
                }
            }
        }
        @if let Some(next) = next {
            li.more #load-more {
                button type="button" hx-get={ "/projects?before=" (next) } hx-target="#load-more" hx-swap="outerHTML" { "Show older projects" }
            }
        }
    }
}

/// `apps`: the published apps' list (empty when there are none).
pub fn home(rows: &[ProjectRow], next: Option<Uuid>, apps: Markup) -> Markup {
    html! {
        div.home {
            h1 { "What do you want to build?" }
            p.lede { "Describe an app. An agent writes it in a sandbox while you watch, then you click around the live preview." }
            (prompt_form("", None))
            div.chips role="group" aria-label="Example prompts" {
                @for example in EXAMPLES {
                    button.chip type="button" data-example=(example) { (example) }
                }
            }
            details.import {
                summary { "Import an existing app" }
                (import_form(None))
            }
            (apps)
            section.projects aria-labelledby="projects-heading" {
                h2 #projects-heading { "Your projects" }
                @if rows.is_empty() {
                    p.empty { "No projects yet. Your first one is a prompt away." }
                } @else {
                    ul.project-list { (project_rows(rows, next)) }
                }
            }
        }
    }
}
