//! HTML pages and the htmx fragments they swap in. Full pages and fragments are rendered
//! by the same view functions; `HX-Request` decides which one a request gets.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::api::{MessageView, validate_prompt};
use super::extract::{PathOf, QueryOf};
use super::upload::{PageUpload, RefusedUpload};
use super::{AppError, AppState};
use crate::store::images::NewImage;
use crate::store::{Attachments, Fragment, ProjectStatus, SelectedElement};
use crate::ui::project::{ProjectPage, Tab, Workspace};
use crate::ui::{self, home, layout, progress, project};

const PAGE_SIZE: usize = 20;

fn is_htmx(headers: &HeaderMap) -> bool {
    headers
        .get("hx-request")
        .is_some_and(|value| value == "true")
}

/// HTML answers vary on `HX-Request`, so caches never mix a fragment with a page.
pub(super) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("HX-Request"));
    response
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    before: Option<Uuid>,
}

fn project_rows(state: &AppState, before: Option<Uuid>, apps: Markup) -> Result<Markup, AppError> {
    let page = state.store.list_projects(PAGE_SIZE, before)?;
    let now = Utc::now();
    let mut first_prompts = Vec::with_capacity(page.projects.len());
    for project in &page.projects {
        let first = state
            .store
            .messages(project.id)?
            .into_iter()
            .next()
            .map(|message| message.content);
        first_prompts.push((
            project.id,
            first.unwrap_or_default(),
            state.store.project_status(project.id)?,
        ));
    }
    let rows: Vec<home::ProjectRow> = page
        .projects
        .iter()
        .zip(&first_prompts)
        .map(|(project, (_, first_prompt, status))| home::ProjectRow {
            id: project.id,
            name: &project.name,
            age: ui::age(project.created_at, now),
            status: *status,
            first_prompt,
        })
        .collect();
    Ok(if before.is_some() {
        home::project_rows(&rows, page.next)
    } else {
        home::home(&rows, page.next, apps)
    })
}

/// The sandbox-image banner alone, which polls itself while the image is built.
pub async fn sandbox_banner(State(state): State<AppState>) -> Response {
    let readiness = state
        .setup
        .sandbox_readiness
        .as_ref()
        .map_or(crate::sandbox::readiness::Readiness::Ready, |cell| {
            cell.get()
        });
    html_response(StatusCode::OK, layout::sandbox_banner(&readiness))
}

pub async fn home_page(State(state): State<AppState>) -> Result<Response, AppError> {
    let apps = state.publisher.listing().await;
    let body = project_rows(&state, None, ui::publish::apps_list(&apps))?;
    Ok(html_response(
        StatusCode::OK,
        layout::page("Build an app", &state.setup, body),
    ))
}

/// The next page of the project list (the "show older projects" button).
pub async fn more_projects(
    State(state): State<AppState>,
    QueryOf(query): QueryOf<ListQuery>,
) -> Result<Response, AppError> {
    Ok(html_response(
        StatusCode::OK,
        project_rows(&state, query.before, maud::html! {})?,
    ))
}

/// A prompt as the pages take it: what was typed, its images and picked elements, and a
/// problem with the upload to show in the form (a refused image) rather than as an error
/// page. What was typed is kept either way.
struct PagePrompt {
    raw: String,
    images: Vec<NewImage>,
    selected: Vec<SelectedElement>,
    problem: Option<AppError>,
}

fn split_upload(PageUpload(upload): PageUpload) -> Result<PagePrompt, AppError> {
    match upload {
        Ok(upload) => Ok(PagePrompt {
            raw: upload.prompt.unwrap_or_default(),
            images: upload.images,
            selected: upload.selected,
            problem: None,
        }),
        Err(RefusedUpload {
            prompt,
            error: error @ (AppError::Image(_) | AppError::Invalid(_)),
        }) => Ok(PagePrompt {
            raw: prompt.unwrap_or_default(),
            images: Vec::new(),
            selected: Vec::new(),
            problem: Some(error),
        }),
        Err(refused) => Err(refused.error),
    }
}

pub async fn create_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    upload: PageUpload,
) -> Result<Response, AppError> {
    let PagePrompt {
        raw,
        images,
        problem,
        ..
    } = split_upload(upload)?;
    let prompt = match problem.map_or_else(|| validate_prompt(Some(&raw)), Err) {
        Ok(prompt) => prompt,
        Err(error) => {
            let form = home::prompt_form(&raw, Some(&error.to_string()));
            let markup = if is_htmx(&headers) {
                form
            } else {
                layout::page("Build an app", &state.setup, html! { div.home { (form) } })
            };
            return Ok(html_response(StatusCode::UNPROCESSABLE_ENTITY, markup));
        }
    };
    let attachments = Attachments {
        images: &images,
        selected: &[],
    };
    let (created, _, job) = state.store.create_project_with(&prompt, attachments)?;
    state.job_submitted(&job)?;
    state.store.flush().await?;
    state.jobs.wake();
    let location = format!("/projects/{}", created.id);
    Ok(if is_htmx(&headers) {
        let mut response = StatusCode::OK.into_response();
        response.headers_mut().insert(
            "hx-redirect",
            HeaderValue::from_str(&location).map_err(|e| AppError::Invalid(e.to_string()))?,
        );
        response
    } else {
        Redirect::to(&location).into_response()
    })
}

#[derive(Debug, Deserialize)]
pub struct WorkspaceQuery {
    fragment: Option<Uuid>,
    tab: Option<String>,
    file: Option<String>,
    /// `1`: the Code tab shows what the version changed.
    changes: Option<String>,
}

/// The Preview tab of the newest version, as the page shows it after a change.
pub fn newest_workspace(detail: &super::api::ProjectDetail) -> Workspace<'_> {
    let fragment = pick_fragment(&detail.messages, None);
    Workspace {
        project_id: detail.project.id,
        fragment,
        preview_url: &detail.preview_url,
        preview_link: &detail.preview_link,
        tab: Tab::Preview,
        file: None,
        version: project::version_of(&detail.messages, fragment),
        version_rows: None,
        changes: None,
        show_changes: false,
    }
}

/// The fragment to show: the one asked for, else the newest.
pub(super) fn pick_fragment(messages: &[MessageView], wanted: Option<Uuid>) -> Option<&Fragment> {
    let mut fragments = messages.iter().filter_map(|view| view.fragment.as_ref());
    match wanted {
        Some(id) => fragments.find(|fragment| fragment.message_id == id),
        None => fragments.next_back(),
    }
}

pub async fn project_page(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    let detail = super::api::project_detail(&state, project_id)?;
    let busy = detail.status != ProjectStatus::Idle;
    let events = if busy {
        state.events.latest_job_events(project_id)?
    } else {
        Vec::new()
    };
    let publish_panel = state.publish_panel_markup(project_id)?;
    let view = ProjectPage {
        id: project_id,
        name: &detail.project.name,
        status: detail.status,
        messages: &detail.messages,
        events: &events,
        publish_panel,
        spent: detail.spent.clone(),
        workspace: Workspace {
            project_id,
            fragment: pick_fragment(&detail.messages, None),
            preview_url: &detail.preview_url,
            preview_link: &detail.preview_link,
            tab: Tab::Preview,
            file: None,
            version: project::version_of(&detail.messages, pick_fragment(&detail.messages, None)),
            version_rows: None,
            changes: None,
            show_changes: false,
        },
    };
    Ok(html_response(
        StatusCode::OK,
        layout::page(&detail.project.name, &state.setup, project::page(&view)),
    ))
}

/// The right-hand side for a chosen fragment and tab, plus the conversation (to mark the
/// chosen version).
pub async fn workspace(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    QueryOf(query): QueryOf<WorkspaceQuery>,
) -> Result<Response, AppError> {
    let detail = super::api::project_detail(&state, project_id)?;
    let fragment = pick_fragment(&detail.messages, query.fragment);
    if query.fragment.is_some() && fragment.is_none() {
        return Err(AppError::NotFound("version"));
    }
    let tab = match query.tab.as_deref() {
        Some("code") => Tab::Code,
        Some("data") => Tab::Data,
        _ => Tab::Preview,
    };
    let version_rows = match fragment {
        Some(fragment) => state
            .store
            .version_snapshot(project_id, fragment.id)?
            .map(|snapshot| snapshot.rows),
        None => None,
    };
    // The Code tab offers what the version changed against the one before.
    let changes = match (fragment, tab) {
        (Some(fragment), Tab::Code) => {
            super::versions::changes_of(&state, project_id, |version| version.id == fragment.id)?
        }
        _ => None,
    };
    let view = Workspace {
        project_id,
        fragment,
        preview_url: &detail.preview_url,
        preview_link: &detail.preview_link,
        tab,
        file: query.file.as_deref(),
        version: project::version_of(&detail.messages, fragment),
        version_rows,
        changes: changes.as_ref(),
        show_changes: query.changes.as_deref() == Some("1"),
    };
    let selected = fragment.map(|fragment| fragment.message_id);
    Ok(html_response(
        StatusCode::OK,
        html! {
            (project::workspace(&view, false))
            (project::conversation(project_id, &detail.messages, selected, true))
        },
    ))
}

pub async fn add_message(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    headers: HeaderMap,
    upload: PageUpload,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    let PagePrompt {
        raw,
        images,
        selected,
        problem,
    } = split_upload(upload)?;
    let checked = problem
        .map_or_else(|| validate_prompt(Some(&raw)), Err)
        .and_then(|prompt| {
            let selected =
                super::selection::with_snippets(&state.store, project_id, selected.clone())?;
            Ok((prompt, selected))
        });
    let (prompt, selected) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            return Ok(html_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                project::follow_up_form(project_id, &raw, Some(&error.to_string()), &selected),
            ));
        }
    };
    let attachments = Attachments {
        images: &images,
        selected: &selected,
    };
    let (_, job) = state
        .store
        .add_user_message_with(project_id, &prompt, attachments)?;
    let queued = state.job_submitted(&job)?;
    state.store.flush().await?;
    state.jobs.wake();
    if !is_htmx(&headers) {
        return Ok(Redirect::to(&format!("/projects/{project_id}")).into_response());
    }
    let detail = super::api::project_detail(&state, project_id)?;
    let selected = pick_fragment(&detail.messages, None).map(|fragment| fragment.message_id);
    Ok(html_response(
        StatusCode::OK,
        html! {
            (project::follow_up_form(project_id, "", None, &[]))
            (project::conversation(project_id, &detail.messages, selected, true))
            (project::status(detail.status, true))
            (progress::panel(project_id, &[queued], true, true))
        },
    ))
}

/// An image attached to a prompt, as it was uploaded (thumbnails in the conversation).
pub async fn image(
    State(state): State<AppState>,
    PathOf((project_id, message_id, index)): PathOf<(Uuid, Uuid, usize)>,
) -> Result<Response, AppError> {
    let (media_type, bytes) = state
        .store
        .image(project_id, message_id, index)?
        .ok_or(AppError::NotFound("image"))?;
    Ok((
        [
            (header::CONTENT_TYPE, media_type),
            // Uploaded bytes are only ever shown as the image type they were checked to be.
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct RestoreQuery {
    /// `1`: bring the version's data back too.
    #[serde(default)]
    data: Option<String>,
}

/// The Restore buttons: the conversation and the workspace show the new newest version.
/// "Restore with data" also puts the version's data back; if that fails, the code stays
/// restored and the error says why the data did not come back.
pub async fn restore_version(
    State(state): State<AppState>,
    PathOf((project_id, version_id)): PathOf<(Uuid, Uuid)>,
    QueryOf(query): QueryOf<RestoreQuery>,
) -> Result<Response, AppError> {
    let with_data = matches!(query.data.as_deref(), Some("1" | "true"));
    let restored = state.restore(project_id, version_id, with_data).await?;
    if let Some(Err(error)) = restored.data {
        return Err(AppError::Invalid(format!(
            "The code of the version was restored, but its data could not be: {error}"
        )));
    }
    let detail = super::api::project_detail(&state, project_id)?;
    let view = newest_workspace(&detail);
    let fragment = view.fragment;
    Ok(html_response(
        StatusCode::OK,
        html! {
            (project::conversation(project_id, &detail.messages, fragment.map(|f| f.message_id), true))
            (project::workspace(&view, true))
        },
    ))
}

/// The Stop button: the WebSocket then brings the stopped state to the page.
pub async fn cancel(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<StatusCode, AppError> {
    state.stop_job(project_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a project from its page and sends the browser home.
pub async fn delete_project(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    state.unpublish_for_deletion(project_id).await?;
    state.store.delete_project(project_id)?;
    state.store.flush().await?;
    state.jobs.release_sandbox(project_id);
    state.git.remove(project_id).await;
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert("hx-redirect", HeaderValue::from_static("/"));
    Ok(response)
}

/// Page routes answer failures with an error page rather than the API's JSON body.
pub async fn errors_as_html(State(state): State<AppState>, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || !is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), super::MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| value["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "Something went wrong.".to_string());
    let reason = status.canonical_reason().unwrap_or("Error");
    html_response(
        status,
        layout::page(
            reason,
            &state.setup,
            ui::errors::error_page(status.as_u16(), reason, &message),
        ),
    )
}
