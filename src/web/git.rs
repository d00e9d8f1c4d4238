//! `git clone http://<host>/git/<name>.git`: a project's versions, read-only, over git's smart
//! HTTP protocol. The repository is brought up to the project's versions before its refs are
//! listed, so a clone or fetch always sees the newest version.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::AppState;
use super::error::AppError;
use crate::git::http::{Request, Service};

/// The project `<name>.git` or `<id>.git` names; a name shared by several projects must be
/// given as the id.
fn project_of(state: &AppState, repository: &str) -> Result<Uuid, AppError> {
    let name = repository
        .strip_suffix(".git")
        .ok_or(AppError::NotFound("repository"))?;
    if let Ok(id) = Uuid::parse_str(name) {
        state.store.project(id)?;
        return Ok(id);
    }
    let named = state.store.projects_named(name)?;
    match named.as_slice() {
        [id] => Ok(*id),
        [] => Err(AppError::NotFound("repository")),
        _ => Err(AppError::BadRequest(format!(
            "{} projects are named {name}; clone /git/<project id>.git instead",
            named.len()
        ))),
    }
}

async fn answer(
    state: &AppState,
    project_id: Uuid,
    service: Service,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AppError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let repository = format!("{project_id}.git");
    let answer = crate::git::http::serve(
        state.git.root(),
        Request {
            service,
            repository: &repository,
            content_type: header("content-type"),
            content_encoding: header("content-encoding"),
            git_protocol: header("git-protocol"),
            body,
        },
    )
    .await?;
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
        answer.body,
    )
        .into_response();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// `GET /git/{repository}/info/refs?service=git-upload-pack`
pub async fn refs(
    State(state): State<AppState>,
    Path(repository): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let project_id = project_of(&state, &repository)?;
    let Some(service) = Service::of("GET", "info/refs", query.as_deref().unwrap_or_default())
    else {
        return Ok(refused_answer());
    };
    state.git.sync_project(&state.store, project_id).await?;
    answer(&state, project_id, service, &headers, &[]).await
}

/// `POST /git/{repository}/git-upload-pack`
pub async fn upload_pack(
    State(state): State<AppState>,
    Path(repository): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let project_id = project_of(&state, &repository)?;
    if !state.git.dir_of(project_id).join("HEAD").exists() {
        return Err(AppError::NotFound("repository"));
    }
    answer(&state, project_id, Service::UploadPack, &headers, &body).await
}

/// Anything else under a repository, pushes included.
pub async fn refused() -> Response {
    refused_answer()
}

fn refused_answer() -> Response {
    (
        StatusCode::FORBIDDEN,
        "CodeFlux's repositories are read-only: clone and fetch work, pushing does not\n",
    )
        .into_response()
}
