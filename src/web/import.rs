//! `POST /api/projects/import`: a new project from an existing app, sent as a zip (`file`)
//! or named by a git address (`git_url`, with `git_token` and `git_ref`). Everything is
//! checked before anything is stored: a refused import leaves nothing behind.

use axum::Json;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::{AppError, AppState};
use crate::import::{ImportError, Imported, Stack};
use crate::store::{MessageType, NewFragment};

/// Largest zip accepted (the app unpacks to at most [`crate::import::MAX_BYTES`]).
pub const MAX_ZIP_BYTES: usize = 48 * 1024 * 1024;

impl From<ImportError> for AppError {
    fn from(error: ImportError) -> Self {
        match error {
            ImportError::TooLarge(message) => AppError::Rejected {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message,
            },
            ImportError::Refused(message) => AppError::Invalid(message),
            ImportError::Io(error) => AppError::Invalid(error.to_string()),
        }
    }
}

#[derive(Debug, Default)]
struct ImportForm {
    zip: Option<Vec<u8>>,
    git_url: Option<String>,
    git_token: Option<String>,
    git_ref: Option<String>,
}

async fn read_form(mut multipart: Multipart) -> Result<ImportForm, AppError> {
    let malformed = |error: axum::extract::multipart::MultipartError| AppError::Rejected {
        status: error.status(),
        message: format!("unreadable import form: {}", error.body_text()),
    };
    let mut form = ImportForm::default();
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => form.zip = Some(field.bytes().await.map_err(malformed)?.to_vec()),
            "git_url" => form.git_url = Some(field.text().await.map_err(malformed)?),
            "git_token" => form.git_token = Some(field.text().await.map_err(malformed)?),
            "git_ref" => form.git_ref = Some(field.text().await.map_err(malformed)?),
            other => {
                return Err(AppError::Invalid(format!(
                    "unknown field {other:?}: send `file` (a zip) or `git_url` (with `git_token`, `git_ref`)"
                )));
            }
        }
    }
    Ok(form)
}

/// What the answer tells besides the project.
#[derive(Debug, Serialize)]
struct ImportNotes {
    stack: Stack,
    files: usize,
    skipped: Vec<SkippedFile>,
}

#[derive(Debug, Serialize)]
struct SkippedFile {
    path: String,
    reason: &'static str,
}

impl AppState {
    /// Stores `imported` as a new project whose v1 is the app as it came.
    fn store_import(
        &self,
        imported: &Imported,
        source: &str,
    ) -> Result<crate::store::Project, AppError> {
        let project = self
            .store
            .create_empty_project(crate::store::AppBase::Own)?;
        let mut description = format!(
            "Imported {} files from {source}: {}.",
            imported.files.len(),
            imported.stack.describe()
        );
        if !imported.skipped.is_empty() {
            description.push_str(&format!(
                " Left out: {}.",
                imported
                    .skipped
                    .iter()
                    .map(|(path, _)| path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let (message, _) = self.store.add_assistant_message(
            project.id,
            MessageType::Result,
            &description,
            None,
            Some(NewFragment {
                title: "Imported app".into(),
                sandbox_url: self.preview_url(project.id),
                files: imported.files.clone(),
                verification: None,
            }),
        )?;
        // Its packages are installed and it is started as the project's first job.
        self.store.add_install_job(project.id, message.id)?;
        Ok(project)
    }
}

impl AppState {
    /// Checks and stores an import: the new project and what came in.
    async fn import(
        &self,
        form: ImportForm,
    ) -> Result<(crate::store::Project, Imported), AppError> {
        let (project, imported) =
            match (form.zip, form.git_url.filter(|url| !url.trim().is_empty())) {
                (Some(zip), None) => {
                    let imported = crate::import::from_zip(&zip)?;
                    (self.store_import(&imported, "a zip")?, imported)
                }
                (None, Some(url)) => {
                    let token = form.git_token.filter(|token| !token.trim().is_empty());
                    let fetched = self
                        .git
                        .fetch_for_import(&url, token, form.git_ref.as_deref())
                        .await?;
                    let files = fetched.files.clone();
                    let imported = match crate::import::from_tree(files.files, files.skipped) {
                        Ok(imported) => imported,
                        Err(error) => {
                            self.git.discard(fetched);
                            return Err(error.into());
                        }
                    };
                    let short = &fetched.commit[..fetched.commit.len().min(10)];
                    let project = self.store_import(&imported, &format!("{url} at {short}"))?;
                    self.git.adopt(project.id, fetched).await?;
                    (project, imported)
                }
                _ => {
                    return Err(AppError::Invalid(
                    "send either a zip of the app (`file`) or a git address (`git_url`), not both"
                        .into(),
                ));
                }
            };
        self.store.flush().await?;
        self.jobs.wake();
        Ok((project, imported))
    }
}

/// `POST /api/projects/import` (multipart): 201 with the project, as `POST /api/projects`
/// answers, and `import` (`stack`, `files`, `skipped`). 422 for an app that cannot come in
/// (not a zip, a path out of its folder, not Next.js, a git address that refuses), 413 for
/// one too large.
pub async fn api_import(
    State(state): State<AppState>,
    multipart: Multipart,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let form = read_form(multipart).await?;
    let (project, imported) = state.import(form).await?;
    let mut body = serde_json::to_value(super::api::project_detail(&state, project.id)?)
        .map_err(|error| AppError::Invalid(error.to_string()))?;
    body["import"] = serde_json::to_value(ImportNotes {
        files: imported.files.len(),
        skipped: imported
            .skipped
            .into_iter()
            .map(|(path, reason)| SkippedFile { path, reason })
            .collect(),
        stack: imported.stack,
    })
    .map_err(|error| AppError::Invalid(error.to_string()))?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// `POST /projects/import` (the home page's form): to the new project, or the form again
/// with the reason.
pub async fn form_import(
    State(state): State<AppState>,
    multipart: Multipart,
) -> Result<axum::response::Response, AppError> {
    use axum::response::IntoResponse;
    let form = read_form(multipart).await?;
    // A form sends an empty file field when no file was chosen.
    let form = ImportForm {
        zip: form.zip.filter(|zip| !zip.is_empty()),
        ..form
    };
    match state.import(form).await {
        Ok((project, _)) => {
            let mut response = StatusCode::OK.into_response();
            let location = format!("/projects/{}", project.id);
            if let Ok(value) = axum::http::HeaderValue::from_str(&location) {
                response.headers_mut().insert("hx-redirect", value);
            }
            Ok(response)
        }
        Err(error @ (AppError::Invalid(_) | AppError::Rejected { .. } | AppError::Git(_))) => {
            Ok(super::pages::html_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                crate::ui::home::import_form(Some(&error.to_string())),
            ))
        }
        Err(error) => Err(error),
    }
}

/// `POST /projects/{id}/messages/{message_id}/fix`: "Fix the install" sends an imported
/// app's failed install or first start, with its log, to the agent as a follow-up.
pub async fn fix_install(
    State(state): State<AppState>,
    super::extract::PathOf((project_id, message_id)): super::extract::PathOf<(
        uuid::Uuid,
        uuid::Uuid,
    )>,
) -> Result<axum::response::Response, AppError> {
    use axum::response::IntoResponse;
    let message = state.store.message(project_id, message_id)?;
    if !crate::jobs::offers_install_fix(&message) {
        return Err(AppError::Invalid(
            "that message is not a failed install or start".into(),
        ));
    }
    let (_, job) = state
        .store
        .add_user_message(project_id, &install_fix_prompt(&message.content))?;
    state.job_submitted(&job)?;
    state.store.flush().await?;
    state.jobs.wake();
    let mut response = StatusCode::OK.into_response();
    if let Ok(location) = axum::http::HeaderValue::from_str(&format!("/projects/{project_id}")) {
        response.headers_mut().insert("hx-redirect", location);
    }
    Ok(response)
}

/// The follow-up for a failed install or start: what happened and the end of its log,
/// within the prompt limit (the log's end is where npm and Next.js say what failed).
fn install_fix_prompt(failure: &str) -> String {
    let head = "The imported app does not run in the sandbox yet. Fix its package.json or its code so that its packages install and its home page renders, keeping the Next.js and React versions it has. What happened:\n\n";
    let room = crate::store::MAX_PROMPT_CHARS.saturating_sub(head.len());
    let chars: Vec<char> = failure.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(room)..].iter().collect();
    format!("{head}{tail}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fix_prompt_keeps_the_end_of_a_long_log_within_the_limit() {
        let failure = format!("{}npm error ERESOLVE at the end", "x".repeat(20_000));
        let prompt = super::install_fix_prompt(&failure);
        assert!(prompt.chars().count() <= crate::store::MAX_PROMPT_CHARS);
        assert!(prompt.ends_with("npm error ERESOLVE at the end"));
        assert!(prompt.starts_with("The imported app does not run"));
    }
}
