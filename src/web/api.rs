//! The JSON API: the contract the UI and external tools build on.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{PathOf, QueryOf};
use super::upload::PromptUpload;
use super::{AppError, AppState};
use crate::events::EventKind;
use crate::store::{Attachments, Project, ProjectStatus, Store, Version};

pub use crate::store::{MAX_PROMPT_CHARS, MessageView};
const DEFAULT_PAGE_SIZE: usize = 20;
const MAX_PAGE_SIZE: usize = 100;

/// Trims the prompt and checks its length (1–10,000 characters).
pub fn validate_prompt(raw: Option<&str>) -> Result<String, AppError> {
    let prompt = raw.unwrap_or_default().trim();
    if prompt.is_empty() {
        return Err(AppError::Invalid("prompt is required".into()));
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(AppError::Invalid(format!(
            "prompt is too long: {chars} characters, at most {MAX_PROMPT_CHARS}"
        )));
    }
    Ok(prompt.to_string())
}

#[derive(Debug, Serialize)]
pub struct ProjectSummary {
    #[serde(flatten)]
    pub project: Project,
    pub status: ProjectStatus,
}

#[derive(Debug, Serialize)]
pub struct ProjectDetail {
    #[serde(flatten)]
    pub project: Project,
    pub status: ProjectStatus,
    pub preview_url: String,
    /// The URL to open in a browser: `preview_url`, or a short-lived signed link to it when
    /// CodeFlux requires a token.
    pub preview_link: String,
    pub messages: Vec<MessageView>,
    /// The published app, if the project has one.
    pub published: Option<crate::publish::AppView>,
    /// The git remote it is pushed to and pulled from (never its token).
    pub remote: Option<crate::git::remote::RemoteView>,
    /// What all its answers spent: tokens, calls and, where known, dollars.
    pub spent: crate::store::TokenUsage,
}

#[derive(Debug, Serialize)]
pub struct ProjectList {
    pub projects: Vec<ProjectSummary>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub before: Option<Uuid>,
}

pub async fn create_project(
    State(state): State<AppState>,
    upload: PromptUpload,
) -> Result<(StatusCode, Json<ProjectDetail>), AppError> {
    let prompt = validate_prompt(upload.prompt.as_deref())?;
    if !upload.selected.is_empty() {
        return Err(AppError::Invalid(
            "elements can be selected only in an app that exists: send them with a follow-up"
                .to_string(),
        ));
    }
    let attachments = Attachments {
        images: &upload.images,
        selected: &[],
    };
    let (project, _, job) = state.store.create_project_with(&prompt, attachments)?;
    state.job_submitted(&job)?;
    state.store.flush().await?;
    state.jobs.wake();
    Ok((
        StatusCode::CREATED,
        Json(project_detail(&state, project.id)?),
    ))
}

pub async fn add_message(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    upload: PromptUpload,
) -> Result<(StatusCode, Json<MessageView>), AppError> {
    let prompt = validate_prompt(upload.prompt.as_deref())?;
    state.store.project(project_id)?;
    let selected = super::selection::with_snippets(&state.store, project_id, upload.selected)?;
    let attachments = Attachments {
        images: &upload.images,
        selected: &selected,
    };
    let (message, job) = state
        .store
        .add_user_message_with(project_id, &prompt, attachments)?;
    state.job_submitted(&job)?;
    state.store.flush().await?;
    state.jobs.wake();
    Ok((
        StatusCode::CREATED,
        Json(MessageView {
            message,
            fragment: None,
            version: None,
        }),
    ))
}

pub async fn list_projects(
    State(state): State<AppState>,
    QueryOf(query): QueryOf<ListQuery>,
) -> Result<Json<ProjectList>, AppError> {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);
    let page = state.store.list_projects(limit, query.before)?;
    let projects = page
        .projects
        .into_iter()
        .map(|project| {
            let status = state.store.project_status(project.id)?;
            Ok(ProjectSummary { project, status })
        })
        .collect::<Result<_, AppError>>()?;
    Ok(Json(ProjectList {
        projects,
        next: page.next,
    }))
}

pub async fn get_project(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Json<ProjectDetail>, AppError> {
    Ok(Json(project_detail(&state, project_id)?))
}

pub async fn delete_project(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<StatusCode, AppError> {
    state.store.project(project_id)?;
    state.unpublish_for_deletion(project_id).await?;
    state.store.delete_project(project_id)?;
    state.store.flush().await?;
    state.jobs.release_sandbox(project_id);
    state.git.remove(project_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Stops the project's running (or queued) job: 202, or 409 when nothing runs.
pub async fn cancel(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    state.stop_job(project_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "stopping" })),
    ))
}

/// The stored progress events of the project's latest job (what the WebSocket replays).
pub async fn project_events(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Json<Vec<crate::events::Event>>, AppError> {
    state.store.project(project_id)?;
    Ok(Json(state.events.latest_job_events(project_id)?))
}

pub fn project_detail(state: &AppState, project_id: Uuid) -> Result<ProjectDetail, AppError> {
    let project = state.store.project(project_id)?;
    // The status is read before the messages: whoever sees a project idle must also see
    // the answer its last job stored (a job stores it, then ends).
    let status = state.store.project_status(project_id)?;
    let messages = message_views(&state.store, project_id)?;
    let mut spent = crate::store::TokenUsage::default();
    for usage in messages
        .iter()
        .filter_map(|view| view.message.usage.clone())
    {
        // The project's figure is a sum: each call's ids stay with its message.
        spent.add(crate::store::TokenUsage {
            calls: Vec::new(),
            ..usage
        });
    }
    Ok(ProjectDetail {
        status,
        preview_url: state.preview_url(project_id),
        preview_link: state.preview_link(project_id),
        messages,
        spent,
        published: state
            .publisher
            .get(project_id)?
            .map(|published| state.publisher.view(published)),
        remote: state.git.remote(project_id)?.map(|remote| remote.view()),
        project,
    })
}

fn message_views(store: &Store, project_id: Uuid) -> Result<Vec<MessageView>, AppError> {
    let mut versions = 0;
    store
        .messages(project_id)?
        .into_iter()
        .map(|message| {
            let fragment = store.fragment(message.id)?;
            let version = fragment.as_ref().map(|_| {
                versions += 1;
                versions
            });
            Ok(MessageView {
                message,
                fragment,
                version,
            })
        })
        .collect()
}

/// Every version of the app, oldest first.
pub async fn list_versions(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Json<Vec<Version>>, AppError> {
    state.store.project(project_id)?;
    Ok(Json(
        state
            .store
            .versions(project_id)?
            .into_iter()
            .map(|(version, _)| version)
            .collect(),
    ))
}

/// What a restore may carry: `{"data": true}` brings the version's data back too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    #[serde(default)]
    pub data: bool,
}

/// The new version, and with `data`, what became of the data.
#[derive(Debug, Serialize)]
pub struct RestoreAnswer {
    #[serde(flatten)]
    pub version: Version,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataRestoreAnswer>,
}

#[derive(Debug, Serialize)]
pub struct DataRestoreAnswer {
    pub restored: bool,
    pub tables: u64,
    pub rows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<crate::jobs::Restored> for RestoreAnswer {
    fn from(restored: crate::jobs::Restored) -> Self {
        let data = restored.data.map(|outcome| match outcome {
            Ok(counts) => DataRestoreAnswer {
                restored: true,
                tables: counts.tables,
                rows: counts.rows,
                error: None,
            },
            Err(error) => DataRestoreAnswer {
                restored: false,
                tables: 0,
                rows: 0,
                error: Some(error),
            },
        });
        Self {
            version: restored.version,
            data,
        }
    }
}

/// Makes an earlier version the newest: 201 with the new version; 409 while a job runs.
/// An empty body restores the code; `{"data": true}` its data as well.
pub async fn restore_version(
    State(state): State<AppState>,
    PathOf((project_id, version_id)): PathOf<(Uuid, Uuid)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RestoreAnswer>), AppError> {
    let request: RestoreRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RestoreRequest::default()
    } else {
        serde_json::from_slice::<Option<RestoreRequest>>(&body)
            .map_err(|error| AppError::Invalid(format!("invalid restore request: {error}")))?
            .unwrap_or_default()
    };
    let restored = state.restore(project_id, version_id, request.data).await?;
    Ok((StatusCode::CREATED, Json(restored.into())))
}

impl AppState {
    pub(crate) async fn restore(
        &self,
        project_id: Uuid,
        version_id: Uuid,
        with_data: bool,
    ) -> Result<crate::jobs::Restored, AppError> {
        self.store.project(project_id)?;
        self.jobs
            .restore(project_id, version_id, with_data)
            .await?
            .ok_or(AppError::Conflict(
                "a job is working on this project; stop it or wait before restoring",
            ))
    }
}

impl AppState {
    /// Stops the project's job, or says there is none.
    pub(crate) async fn stop_job(&self, project_id: Uuid) -> Result<(), AppError> {
        self.store.project(project_id)?;
        if !self.jobs.cancel(project_id)? {
            return Err(AppError::Conflict("nothing is running for this project"));
        }
        self.store.flush().await?;
        Ok(())
    }

    /// Announces a freshly stored job on the project's progress stream.
    pub(crate) fn job_submitted(
        &self,
        job: &crate::store::Job,
    ) -> Result<crate::events::Event, AppError> {
        Ok(self
            .events
            .publish(job.project_id, job.id, EventKind::Queued)?)
    }
}

/// Prometheus scrapes this (behind the same token as the API when one is set).
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    let open = state.store.open_jobs().count();
    let running = state.jobs.running_count();
    let (sandboxes, warm) = match &state.jobs.generation().sandboxes {
        Some(provider) => (provider.running_count().await, provider.warm_count()),
        None => (Some(0), 0),
    };
    let jobs = crate::metrics::JobCounts {
        queued: open.saturating_sub(running),
        running,
    };
    let text = state.metrics.encode(jobs, sandboxes, warm);
    axum::response::IntoResponse::into_response((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    ))
}
