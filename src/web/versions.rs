//! What each version changed against the one before it:
//! `GET /api/projects/{id}/versions/{n}/diff`, and the same changes for the Code tab.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::AppError;
use super::extract::PathOf;
use crate::diff::{self, Changes};
use crate::store::Version;

/// The changes of the version `is_it` picks, if there is one.
pub(crate) fn changes_of(
    state: &AppState,
    project_id: Uuid,
    is_it: impl Fn(&Version) -> bool,
) -> Result<Option<Changes>, AppError> {
    let versions = state.store.versions(project_id)?;
    let Some(index) = versions.iter().position(|(version, _)| is_it(version)) else {
        return Ok(None);
    };
    let empty = BTreeMap::new();
    let (previous, before) = match index.checked_sub(1).map(|earlier| &versions[earlier]) {
        Some((version, fragment)) => (Some(version.version), &fragment.files),
        None => (None, &empty),
    };
    let (version, fragment) = &versions[index];
    Ok(Some(Changes {
        version: version.version,
        previous,
        files: diff::files(before, &fragment.files),
    }))
}

/// `GET /api/projects/{id}/versions/{n}/diff`: each file added, changed or removed, with
/// its lines added and removed, its hunks and its unified diff (`patch`).
pub async fn api_diff(
    State(state): State<AppState>,
    PathOf((project_id, number)): PathOf<(Uuid, u32)>,
) -> Result<Json<Value>, AppError> {
    state.store.project(project_id)?;
    let changes = changes_of(&state, project_id, |version| version.version == number)?
        .ok_or(AppError::NotFound("version"))?;
    let files: Vec<Value> = changes
        .files
        .iter()
        .map(|file| {
            json!({
                "path": file.path,
                "status": file.status,
                "added": file.added,
                "removed": file.removed,
                "patch": file.unified(),
                "hunks": file.hunks,
            })
        })
        .collect();
    Ok(Json(json!({
        "version": changes.version,
        "previous": changes.previous,
        "added": changes.added(),
        "removed": changes.removed(),
        "files": files,
    })))
}
