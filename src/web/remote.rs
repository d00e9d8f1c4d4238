//! A project's git remote over HTTP: setting it (`PUT /api/projects/{id}/remote`), pushing
//! and pulling (`POST …/push`, `POST …/pull`), and the Code tab's remote panel.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{FormOf, JsonOf, PathOf};
use super::pages::html_response;
use super::{AppError, AppState};
use crate::git::remote::{Remote, RemoteView};
use crate::git::{GitError, Pulled};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteBody {
    url: String,
    token: Option<String>,
    #[serde(default)]
    push_after_version: bool,
}

/// A form's checkbox: present ("true") when ticked, absent otherwise.
#[derive(Debug, Deserialize)]
pub struct RemoteForm {
    url: String,
    token: Option<String>,
    push_after_version: Option<String>,
}

/// What a pull did.
#[derive(Debug, Serialize)]
pub struct PullAnswer {
    /// The version it made, if the remote had something new.
    pub version: Option<u32>,
    /// The remote had changed and so had the project: its state is its own version, and
    /// the project's own stays as the version before.
    pub diverged: bool,
    pub message: String,
    /// Files of the remote not taken in, and why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: &'static str,
}

impl AppState {
    async fn set_remote(&self, project_id: Uuid, body: RemoteBody) -> Result<RemoteView, AppError> {
        self.store.project(project_id)?;
        let remote = Remote::new(&body.url, body.token, body.push_after_version)?;
        Ok(self.git.set_remote(project_id, remote).await?.view())
    }

    async fn push(&self, project_id: Uuid) -> Result<String, AppError> {
        self.store.project(project_id)?;
        Ok(self.git.push(&self.store, project_id).await?)
    }

    /// Fetches the remote's `main`; when it holds something new, its files become the
    /// project's next version. Diverged histories never overwrite: the remote's state is a
    /// version of its own, and the project's own is the one before it, to restore.
    async fn pull(&self, project_id: Uuid) -> Result<PullAnswer, AppError> {
        self.store.project(project_id)?;
        let (commit, diverged, files) = match self.git.fetch(&self.store, project_id).await? {
            Pulled::New {
                commit,
                diverged,
                files,
            } => (commit, diverged, files),
            nothing => {
                let message = match nothing {
                    Pulled::Empty => "The remote has no main branch yet: push first.",
                    _ => "Already up to date: the remote has nothing new.",
                };
                self.git.pull_told(project_id, true, message)?;
                return Ok(PullAnswer {
                    version: None,
                    diverged: false,
                    message: message.into(),
                    skipped: Vec::new(),
                });
            }
        };
        if files.files.is_empty() {
            let message = "The remote's main holds no file that can be taken in.";
            self.git.pull_told(project_id, false, message)?;
            return Err(AppError::Invalid(message.into()));
        }
        let short = &commit[..commit.len().min(10)];
        let before = self.store.versions(project_id)?.len();
        let description = if diverged {
            format!(
                "Pulled {short} from the remote. The remote had changed and so had this project: this version is the remote's state; version {before} is this project's own, restore it to keep that instead."
            )
        } else {
            format!("Pulled {short} from the remote.")
        };
        let version = self
            .jobs
            .replace_files(project_id, files.files, &description)
            .await?
            .ok_or(AppError::Conflict(
                "a job is working on this project; stop it or wait before pulling",
            ))?;
        let message = format!("v{}: {description}", version.version);
        self.git
            .pulled_into(&self.store, project_id, version.version, &commit, &message)
            .await?;
        Ok(PullAnswer {
            version: Some(version.version),
            diverged,
            message,
            skipped: files
                .skipped
                .into_iter()
                .map(|(path, reason)| Skipped { path, reason })
                .collect(),
        })
    }

    fn remote_panel(
        &self,
        project_id: Uuid,
        notice: crate::ui::remote::Notice,
    ) -> Result<Response, AppError> {
        let remote = self.git.remote(project_id)?.map(|remote| remote.view());
        let status = match notice {
            Some((false, _)) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::OK,
        };
        Ok(html_response(
            status,
            crate::ui::remote::panel(project_id, remote.as_ref(), notice),
        ))
    }

    /// The panel after an action: its words as the notice; a failure the person can act
    /// on is told in the panel, anything else is an error page.
    fn remote_panel_after(
        &self,
        project_id: Uuid,
        done: Result<String, AppError>,
    ) -> Result<Response, AppError> {
        match done {
            Ok(words) => self.remote_panel(project_id, Some((true, &words))),
            Err(AppError::Git(error)) if !matches!(error, GitError::Io(_) | GitError::Store(_)) => {
                self.remote_panel(project_id, Some((false, &error.to_string())))
            }
            Err(error @ (AppError::Conflict(_) | AppError::Invalid(_))) => {
                self.remote_panel(project_id, Some((false, &error.to_string())))
            }
            Err(error) => Err(error),
        }
    }
}

/// Follows new versions and pushes each project whose remote asks for it, until the
/// server stops (it holds the server's state, so it must not outlive it).
pub async fn push_after_versions(
    state: AppState,
    mut versions: tokio::sync::broadcast::Receiver<Uuid>,
) {
    loop {
        let next = tokio::select! {
            next = versions.recv() => next,
            () = state.shutdown.cancelled() => return,
        };
        let project_id = match next {
            Ok(project_id) => project_id,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "missed new versions; their projects are pushed with their next one"
                );
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let wanted =
            matches!(state.git.remote(project_id), Ok(Some(remote)) if remote.push_after_version);
        if !wanted {
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            match state.git.push(&state.store, project_id).await {
                Ok(message) => tracing::info!(%project_id, %message, "pushed after a new version"),
                Err(error) => {
                    tracing::warn!(%project_id, %error, "could not push after a new version")
                }
            }
        });
    }
}

/// `PUT /api/projects/{id}/remote {"url", "token", "push_after_version"}`: 200 with the
/// remote (never its token) once it answered; 422 when it refused the token.
pub async fn api_set(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    JsonOf(body): JsonOf<RemoteBody>,
) -> Result<Json<RemoteView>, AppError> {
    Ok(Json(state.set_remote(project_id, body).await?))
}

/// `DELETE /api/projects/{id}/remote`: forgets the remote and its token.
pub async fn api_forget(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<StatusCode, AppError> {
    state.store.project(project_id)?;
    match state.git.remove_remote(project_id)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(AppError::NotFound("remote")),
    }
}

/// `POST /api/projects/{id}/push`: 200 `{"message"}`; 409 when the remote moved on.
pub async fn api_push(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Json<serde_json::Value>, AppError> {
    let message = state.push(project_id).await?;
    Ok(Json(serde_json::json!({ "message": message })))
}

/// `POST /api/projects/{id}/pull`: 200 with what it did (see [`PullAnswer`]).
pub async fn api_pull(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Json<PullAnswer>, AppError> {
    Ok(Json(state.pull(project_id).await?))
}

/// `GET /projects/{id}/remote`: the Code tab's remote panel.
pub async fn panel(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    state.remote_panel(project_id, None)
}

/// `POST /projects/{id}/remote` (form).
pub async fn form_set(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    FormOf(form): FormOf<RemoteForm>,
) -> Result<Response, AppError> {
    let body = RemoteBody {
        url: form.url,
        token: form.token,
        push_after_version: form.push_after_version.is_some(),
    };
    let set = state
        .set_remote(project_id, body)
        .await
        .map(|remote| format!("Saved: {} answered.", remote.url));
    state.remote_panel_after(project_id, set)
}

/// `POST /projects/{id}/remote/forget` (form).
pub async fn form_forget(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    state.git.remove_remote(project_id)?;
    state.remote_panel(
        project_id,
        Some((true, "The remote and its token are forgotten.")),
    )
}

/// `POST /projects/{id}/push` (form).
pub async fn form_push(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    let pushed = state.push(project_id).await;
    state.remote_panel_after(project_id, pushed)
}

/// `POST /projects/{id}/pull` (form).
pub async fn form_pull(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    let pulled = state.pull(project_id).await.map(|answer| {
        let skipped = match answer.skipped.len() {
            0 => String::new(),
            count => format!(" {count} files were not taken in (binary, links or secrets)."),
        };
        format!("{}{skipped}", answer.message)
    });
    state.remote_panel_after(project_id, pulled)
}
