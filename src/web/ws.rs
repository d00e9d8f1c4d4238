//! The progress WebSocket: replays what the project's current job did so far, streams the
//! rest as rendered htmx out-of-band fragments, and on the job's end swaps in the new
//! messages and version without a page reload.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::extract::{PathOf, QueryOf};
use super::{AppError, AppState};
use crate::events::{Event, EventKind};
use crate::store::ProjectStatus;
use crate::ui::progress;
use crate::ui::project;

#[derive(Debug, Deserialize)]
pub struct SocketQuery {
    /// The last event the page already shows.
    #[serde(default)]
    after: u64,
}

pub async fn progress_socket(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    QueryOf(query): QueryOf<SocketQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    // The guard in front of every route has refused upgrades from other origins.
    state.store.project(project_id)?;
    match upgrade {
        Ok(upgrade) => {
            Ok(upgrade.on_upgrade(move |socket| stream(state, project_id, query.after, socket)))
        }
        Err(rejection) => Ok(rejection.into_response()),
    }
}

async fn stream(state: AppState, project_id: Uuid, after: u64, mut socket: WebSocket) {
    let Ok((replayed, mut live)) = state.events.watch(project_id) else {
        return;
    };
    // Events the page already rendered count as seen (the header needs them), unsent.
    let (shown, unseen): (Vec<Event>, Vec<Event>) =
        replayed.into_iter().partition(|event| event.seq <= after);
    let mut seen: Vec<Arc<Event>> = shown.into_iter().map(Arc::new).collect();
    // Snapshots of a streamed answer replace each other: only the newest is worth replaying.
    let last = unseen.len().saturating_sub(1);
    let unseen = unseen.into_iter().enumerate().filter_map(|(index, event)| {
        let superseded = matches!(event.kind, EventKind::ModelStreaming { .. }) && index < last;
        (!superseded).then_some(Arc::new(event))
    });
    for event in unseen {
        if send_event(&state, project_id, &mut socket, &mut seen, event)
            .await
            .is_break()
        {
            return;
        }
    }
    loop {
        let received = tokio::select! {
            received = live.recv() => received,
            _ = state.shutdown.cancelled() => {
                // The page's socket reconnects by itself once the server is back.
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        };
        let event = match received {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => {
                // Fell behind: catch up from storage.
                let last = seen.last().map_or(0, |event| event.seq);
                let Ok(stored) = state.events.latest_job_events(project_id) else {
                    return;
                };
                let mut ended = false;
                for event in stored
                    .into_iter()
                    .filter(|event| event.seq > last)
                    .map(Arc::new)
                {
                    ended = send_event(&state, project_id, &mut socket, &mut seen, event)
                        .await
                        .is_break();
                    if ended {
                        break;
                    }
                }
                if ended {
                    return;
                }
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if send_event(&state, project_id, &mut socket, &mut seen, event)
            .await
            .is_break()
        {
            return;
        }
    }
}

/// Sends one event; `Break` when the socket is gone or the job ended.
async fn send_event(
    state: &AppState,
    project_id: Uuid,
    socket: &mut WebSocket,
    seen: &mut Vec<Arc<Event>>,
    event: Arc<Event>,
) -> std::ops::ControlFlow<()> {
    if seen.last().is_some_and(|last| event.seq <= last.seq) {
        return std::ops::ControlFlow::Continue(());
    }
    // A new job started after the one we showed: start its list afresh.
    if seen.last().is_some_and(|last| last.job_id != event.job_id) {
        seen.clear();
    }
    let terminal = event.kind.is_terminal();
    let job_id = event.job_id;
    seen.push(event);
    let mut markup = progress::push(seen.last().expect("just pushed"), seen).into_string();
    if terminal {
        match finished(state, project_id, job_id) {
            Ok(extra) => markup.push_str(&extra.into_string()),
            Err(error) => tracing::warn!(%error, "could not render the finished job"),
        }
    }
    if socket.send(Message::Text(markup.into())).await.is_err() {
        return std::ops::ControlFlow::Break(());
    }
    if terminal
        && state
            .store
            .project_status_besides(project_id, Some(job_id))
            .ok()
            == Some(ProjectStatus::Idle)
    {
        let _ = socket.send(Message::Close(None)).await;
        return std::ops::ControlFlow::Break(());
    }
    std::ops::ControlFlow::Continue(())
}

/// After a job: the new messages, the newest version in the workspace, the status badge,
/// and the panel put away unless another job is waiting.
fn finished(state: &AppState, project_id: Uuid, job_id: Uuid) -> Result<Markup, AppError> {
    let mut detail = super::api::project_detail(state, project_id)?;
    detail.status = state
        .store
        .project_status_besides(project_id, Some(job_id))?;
    let workspace = super::pages::newest_workspace(&detail);
    let fragment = workspace.fragment;
    let idle = detail.status == ProjectStatus::Idle;
    Ok(html! {
        (project::conversation(project_id, &detail.messages, fragment.map(|f| f.message_id), true))
        (project::workspace(&workspace, true))
        (project::status(detail.status, true))
        @if idle { (progress::panel(project_id, &[], false, true)) }
    })
}
