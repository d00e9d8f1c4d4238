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
        let project = self.store.create_empty_project()?;
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
        self.store.add_assistant_message(
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
