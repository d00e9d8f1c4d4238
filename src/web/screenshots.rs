//! The browser check of a version, and its screenshots: `GET /api/projects/{id}/versions/{n}/check`,
//! `…/screenshots/{index}` (API and page alike).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::AppError;
use super::extract::PathOf;
use crate::store::Fragment;

fn version_numbered(state: &AppState, project_id: Uuid, number: u32) -> Result<Fragment, AppError> {
    state.store.project(project_id)?;
    state
        .store
        .versions(project_id)?
        .into_iter()
        .find(|(version, _)| version.version == number)
        .map(|(_, fragment)| fragment)
        .ok_or(AppError::NotFound("version"))
}

/// Where a page's screenshot is served, for the UI and the API's answers.
pub fn screenshot_path(project_id: Uuid, version: u32, index: usize) -> String {
    format!("/projects/{project_id}/versions/{version}/screenshots/{index}")
}

/// `GET /api/projects/{id}/versions/{n}/check`: how the version was checked, with each page
/// the browser opened (clicks, problems, time, screenshot URL).
pub async fn api_check(
    State(state): State<AppState>,
    PathOf((project_id, number)): PathOf<(Uuid, u32)>,
) -> Result<Json<Value>, AppError> {
    let fragment = version_numbered(&state, project_id, number)?;
    let Some(verification) = fragment.verification else {
        return Ok(Json(json!({ "version": number, "checked": false })));
    };
    let browser = verification.browser.map(|browser| {
        let pages: Vec<Value> = browser
            .pages
            .iter()
            .enumerate()
            .map(|(index, page)| {
                json!({
                    "route": page.route,
                    "clicks": page.clicks,
                    "problems": page.problems,
                    "millis": page.millis,
                    "screenshot": page.screenshot.then(|| format!("/api{}", screenshot_path(project_id, number, index))),
                })
            })
            .collect();
        json!({
            "summary": browser.describe(),
            "unavailable": browser.unavailable,
            "pages": pages,
        })
    });
    Ok(Json(json!({
        "version": number,
        "checked": true,
        "status": verification.status,
        "errors": verification.errors,
        "browser": browser,
    })))
}

/// One page's screenshot from the version's browser check.
pub async fn screenshot(
    State(state): State<AppState>,
    PathOf((project_id, number, index)): PathOf<(Uuid, u32, usize)>,
) -> Result<Response, AppError> {
    let fragment = version_numbered(&state, project_id, number)?;
    let (media_type, bytes) = state
        .store
        .screenshot(project_id, fragment.id, index)?
        .ok_or(AppError::NotFound("screenshot"))?;
    Ok((
        [
            (header::CONTENT_TYPE, media_type.to_string()),
            // Bytes the sandbox made: only ever shown as the image type they were checked to be.
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
