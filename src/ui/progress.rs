//! The live progress panel of a running job, and the pieces the WebSocket pushes into it.

use maud::{Markup, html};
use uuid::Uuid;

use std::borrow::Borrow;

use crate::events::{Event, EventKind};

/// One line of the progress list; `None` for events shown only in the panel's header.
pub fn item(event: &Event) -> Option<Markup> {
    let (class, mark, text): (&str, &str, Markup) = match &event.kind {
        EventKind::Queued => ("", "•", html! { "Queued, waiting for a free worker" }),
        EventKind::Started { attempt } if *attempt > 1 => (
            "",
            "↻",
            html! { "Started again after an interruption (attempt " (attempt) ")" },
        ),
        EventKind::Started { .. } => ("", "•", html! { "Started" }),
        EventKind::SandboxReady {
            backend,
            created,
            restored_files,
        } => (
            "ok",
            "✓",
            html! {
                "Sandbox ready (" (backend)
                @if *created { ", new" }
                @if *restored_files > 0 { ", restored " (restored_files) " files" }
                ")"
            },
        ),
        EventKind::PackagesInstalled { ok: true, detail } => ("ok", "📦", html! { (detail) }),
        EventKind::PackagesInstalled { ok: false, detail } => (
            "fail",
            "📦",
            html! { details { summary { "The app's packages could not be installed" } pre { (detail) } } },
        ),
        EventKind::ModelTurn { .. }
        | EventKind::ToolStarted { .. }
        | EventKind::ModelStreaming { .. } => return None,
        EventKind::ModelText { text } => ("", "💬", html! { (text) }),
        EventKind::ModelThinking { text } => (
            "thinking",
            "💭",
            html! { details { summary { "Thinking" } p { (text) } } },
        ),
        EventKind::ToolFinished {
            summary,
            ok,
            elapsed_ms,
            ..
        } => (
            if *ok { "ok" } else { "fail" },
            if *ok { "✓" } else { "✗" },
            html! { code { (summary) } " · " (format!("{:.1} s", *elapsed_ms as f64 / 1000.0)) },
        ),
        EventKind::Summary { text } => ("", "📝", html! { (text) }),
        EventKind::Checking => ("", "🔎", html! { "Checking the app…" }),
        EventKind::CheckPassed => ("ok", "✓", html! { "Checked: compiles and renders" }),
        EventKind::BrowserChecked {
            summary,
            pages,
            problems,
            ..
        } => (
            if *pages == 0 {
                ""
            } else if *problems == 0 {
                "ok"
            } else {
                "fail"
            },
            "🌐",
            html! { (summary) },
        ),
        EventKind::Compacted { saved_bytes, .. } => (
            "",
            "✂",
            html! { "The conversation was too long for the model: cut " (saved_bytes) " bytes of older traffic and tried again" },
        ),
        EventKind::LookingAtScreenshot => (
            "",
            "👀",
            html! { "Showing the model the front page, to judge whether it looks as asked" },
        ),
        EventKind::CheckFailed {
            summary,
            fixing: true,
        } => ("fail", "✗", html! { "Found " (summary) ", fixing…" }),
        EventKind::CheckFailed {
            summary,
            fixing: false,
        } => ("fail", "✗", html! { "Still failing: " (summary) }),
        EventKind::Requeued { reason } => ("", "↻", html! { (reason) }),
        EventKind::Finished { stopped: true, .. } => ("", "■", html! { "Stopped" }),
        EventKind::Finished {
            ok: true, detail, ..
        } => ("ok", "✓", html! { "Done, " (detail) }),
        EventKind::Finished {
            ok: false, detail, ..
        } => ("fail", "✗", html! { "Failed: " (detail) }),
    };
    Some(
        html! { li.(class) id={ "event-" (event.seq) } { span.mark aria-hidden="true" { (mark) } span { (text) } } },
    )
}

/// What the agent is doing right now, for the panel's header.
fn step_label<E: Borrow<Event>>(events: &[E]) -> String {
    let turn = events
        .iter()
        .rev()
        .find_map(|event| match &event.borrow().kind {
            EventKind::ModelTurn {
                iteration,
                max_iterations,
                tokens,
                token_budget,
            } => Some((*iteration, *max_iterations, *tokens, *token_budget)),
            _ => None,
        });
    let doing = match events.last().map(|event| &event.borrow().kind) {
        None | Some(EventKind::Queued) => "Waiting in the queue".to_string(),
        Some(EventKind::Started { .. }) => "Preparing the sandbox".to_string(),
        Some(EventKind::ToolStarted { tool, summary }) => format!("{} {summary}", verb(tool)),
        Some(EventKind::ModelStreaming {
            file: Some(file), ..
        }) => format!("Writing {file}"),
        Some(EventKind::ModelStreaming { .. }) => "Answering".to_string(),
        Some(EventKind::Summary { .. }) => "Writing the reply".to_string(),
        Some(EventKind::Checking) => "Checking the app".to_string(),
        Some(EventKind::CheckFailed { fixing: true, .. }) => {
            "Fixing what the check found".to_string()
        }
        Some(EventKind::Requeued { .. }) => "Waiting for CodeFlux to restart".to_string(),
        Some(EventKind::Finished { stopped: true, .. }) => "Stopped".to_string(),
        Some(EventKind::Finished { ok: true, .. }) => "Done".to_string(),
        Some(EventKind::Finished { ok: false, .. }) => "Failed".to_string(),
        Some(_) => "Thinking".to_string(),
    };
    match turn {
        Some((iteration, max, tokens, Some(budget))) => format!(
            "Step {iteration} of {max} · {} of {} tokens · {doing}",
            short_count(tokens),
            short_count(budget)
        ),
        Some((iteration, max, ..)) => format!("Step {iteration} of {max} · {doing}"),
        None => doing,
    }
}

/// `61200` → `61k`, `1500000` → `1.5M`: token counts as people read them.
fn short_count(count: u64) -> String {
    match count {
        0..1_000 => count.to_string(),
        1_000..1_000_000 => format!("{}k", count / 1_000),
        _ => {
            let tenths = count / 100_000;
            match tenths % 10 {
                0 => format!("{}M", tenths / 10),
                rest => format!("{}.{rest}M", tenths / 10),
            }
        }
    }
}

fn verb(tool: &str) -> &'static str {
    match tool {
        "terminal" => "Running",
        "createOrUpdateFiles" => "Writing",
        "editFile" => "Editing",
        "readFiles" => "Reading",
        _ => "Calling",
    }
}

fn progress_percent<E: Borrow<Event>>(events: &[E]) -> u32 {
    events
        .iter()
        .rev()
        .find_map(|event| match &event.borrow().kind {
            EventKind::ModelTurn {
                iteration,
                max_iterations,
                ..
            } => Some(iteration * 100 / (*max_iterations).max(1)),
            EventKind::Finished { .. } => Some(100),
            _ => None,
        })
        .unwrap_or(2)
}

/// The panel header with its progress bar; replaced as a whole on every event.
/// Takes events or shared events (`Arc<Event>`, as the WebSocket keeps them).
pub fn head<E: Borrow<Event>>(events: &[E], out_of_band: bool) -> Markup {
    let first = events.first().map(Borrow::borrow);
    let started = first.map(|event| event.at.to_rfc3339());
    let finished = events
        .last()
        .is_some_and(|event| event.borrow().kind.is_terminal());
    html! {
        div #progress-head hx-swap-oob=[out_of_band.then_some("true")] {
          div.head {
            span {
                @if !finished { span.spinner aria-hidden="true" {} " " }
                span #progress-step { (step_label(events)) }
            }
            @if let Some(started) = started {
                @if finished { span.elapsed { "finished" } } @else { span.elapsed data-started=(started) title="Elapsed time" { "0:00" } }
            }
            @if let (false, Some(first)) = (finished, first) {
                button.stop type="button" hx-post={ "/projects/" (first.project_id) "/cancel" } hx-swap="none"
                    title="Stop this request; files written so far are kept" { "Stop" }
            }
          }
          div.bar aria-hidden="true" { span style={ "width:" (progress_percent(events)) "%" } {} }
        }
    }
}

/// The whole panel. While the job runs it holds the WebSocket that streams into it.
pub fn panel(project_id: Uuid, events: &[Event], live: bool, out_of_band: bool) -> Markup {
    let oob = out_of_band.then_some("true");
    html! {
        @if live {
            // The socket sends only what came after the events rendered here.
            section #progress .progress aria-label="Progress" hx-swap-oob=[oob] hx-ext="ws"
                ws-connect={ "/projects/" (project_id) "/ws?after=" (events.last().map_or(0, |event| event.seq)) } {
                (head(events, false))
                ol #progress-list aria-live="polite" aria-relevant="additions" {
                    @for event in events { @if let Some(item) = item(event) { (item) } }
                }
                (live_output(events.last(), false))
            }
        } @else {
            section #progress hx-swap-oob=[oob] hidden {}
        }
    }
}

/// The answer being written right now; empty unless the newest event is a snapshot of it.
pub fn live_output(latest: Option<&Event>, out_of_band: bool) -> Markup {
    let oob = out_of_band.then_some("true");
    html! {
        @match latest.map(|event| &event.kind) {
            Some(EventKind::ModelStreaming { text, file, code }) => {
                div #live-output .live-output hx-swap-oob=[oob] aria-live="off" {
                    @if let Some(code) = code {
                        p {
                            "Writing "
                            @if let Some(file) = file { code { (file) } } @else { "a file" }
                            "…"
                        }
                        pre { code { (code) } }
                    } @else if !text.is_empty() {
                        p.live-text { (text) }
                    }
                }
            }
            _ => div #live-output .live-output hx-swap-oob=[oob] hidden {},
        }
    }
}

/// What the WebSocket sends for one event: the new line, the refreshed header and the
/// answer being written (or nothing, once it is done).
pub fn push<E: Borrow<Event>>(event: &Event, events_so_far: &[E]) -> Markup {
    html! {
        @if let Some(item) = item(event) {
            div hx-swap-oob="beforeend:#progress-list" { (item) }
        }
        (head(events_so_far, true))
        (live_output(Some(event), true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 1,
            project_id: Uuid::nil(),
            job_id: Uuid::nil(),
            at: chrono::Utc::now(),
            kind,
        }
    }

    #[test]
    fn the_step_shows_what_the_request_spent_of_its_budget() {
        let turn = |tokens, token_budget| {
            event(EventKind::ModelTurn {
                iteration: 3,
                max_iterations: 30,
                tokens,
                token_budget,
            })
        };
        assert_eq!(
            step_label(&[turn(61_200, Some(400_000))]),
            "Step 3 of 30 · 61k of 400k tokens · Thinking"
        );
        assert_eq!(step_label(&[turn(61_200, None)]), "Step 3 of 30 · Thinking");
        assert_eq!(short_count(950), "950");
        assert_eq!(short_count(1_500_000), "1.5M");
        assert_eq!(short_count(2_000_000), "2M");
    }
}
