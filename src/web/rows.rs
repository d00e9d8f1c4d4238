//! Changing one row of a running app's data: `PATCH` sets columns, `DELETE` removes the row,
//! each finding the row by its whole primary key; the Data tab's edit forms do the same.
//! A saved copy is never edited, so the app must be running.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::AppState;
use super::data::{PanelQuery, render_panel};
use super::error::AppError;
use super::extract::{FormOf, JsonOf, PathOf};
use crate::data::{DataError, RowEdit};

#[derive(Debug, Deserialize)]
pub struct RowChange {
    key: Map<String, Value>,
    #[serde(default)]
    set: Option<Map<String, Value>>,
}

/// `PATCH /api/projects/{id}/data/{table}/rows` `{"key": {...}, "set": {...}}`.
pub async fn api_update(
    State(state): State<AppState>,
    PathOf((project_id, table)): PathOf<(Uuid, String)>,
    JsonOf(change): JsonOf<RowChange>,
) -> Result<Json<Value>, AppError> {
    let Some(set) = change.set.filter(|set| !set.is_empty()) else {
        return Err(AppError::Invalid(
            "give the columns to change in `set`".into(),
        ));
    };
    let edit = RowEdit {
        table,
        key: change.key,
        set: Some(set),
        delete: false,
    };
    apply(&state, project_id, edit).await?;
    Ok(Json(serde_json::json!({ "changed": 1 })))
}

/// `DELETE /api/projects/{id}/data/{table}/rows` `{"key": {...}}`.
pub async fn api_delete(
    State(state): State<AppState>,
    PathOf((project_id, table)): PathOf<(Uuid, String)>,
    JsonOf(change): JsonOf<RowChange>,
) -> Result<Json<Value>, AppError> {
    let edit = RowEdit {
        table,
        key: change.key,
        set: None,
        delete: true,
    };
    apply(&state, project_id, edit).await?;
    Ok(Json(serde_json::json!({ "deleted": 1 })))
}

async fn apply(state: &AppState, project_id: Uuid, edit: RowEdit) -> Result<(), AppError> {
    state.store.project(project_id)?;
    let outcome = state
        .jobs
        .edit_row(project_id, edit)
        .await?
        .ok_or(AppError::Conflict(
            "a job is working on this project; stop it or wait before changing its data",
        ))?;
    outcome.map_err(|error| match error {
        DataError::NoSuchTable(_) => AppError::NotFound("table"),
        DataError::NotOpen(reason) => AppError::Rejected {
            status: StatusCode::CONFLICT,
            message: reason,
        },
        // The database's own answer: a key that finds no row, a value of the wrong type.
        DataError::Refused(reason) => AppError::Invalid(reason),
        other => other.into(),
    })
}

/// The Data tab's forms: `key` is the row's key as JSON; with `column` (and `value`, or
/// `null=on`) one cell is set, without it the row is deleted.
#[derive(Debug, Deserialize)]
pub struct RowForm {
    key: String,
    column: Option<String>,
    value: Option<String>,
    null: Option<String>,
    page: Option<usize>,
}

/// Applies a form's change and shows the panel again, with what happened.
pub async fn form(
    State(state): State<AppState>,
    PathOf((project_id, table)): PathOf<(Uuid, String)>,
    FormOf(form): FormOf<RowForm>,
) -> Result<Response, AppError> {
    let key: Map<String, Value> = serde_json::from_str(&form.key)
        .map_err(|_| AppError::Invalid("the row's key is not JSON".into()))?;
    let (edit, done) = match form.column {
        Some(column) => {
            let value = match (form.null.is_some(), form.value) {
                (true, _) | (false, None) => Value::Null,
                (false, Some(text)) => Value::String(text),
            };
            let done = format!("Changed {column}.");
            let set = Map::from_iter([(column, value)]);
            let edit = RowEdit {
                table: table.clone(),
                key,
                set: Some(set),
                delete: false,
            };
            (edit, done)
        }
        None => {
            let edit = RowEdit {
                table: table.clone(),
                key,
                set: None,
                delete: true,
            };
            (edit, "Deleted the row.".to_string())
        }
    };
    let notice = match apply(&state, project_id, edit).await {
        Ok(()) => done,
        Err(AppError::Invalid(reason))
        | Err(AppError::Rejected {
            message: reason, ..
        }) => {
            format!("Nothing changed: {reason}")
        }
        Err(other) => return Err(other),
    };
    let query = PanelQuery {
        table: Some(table),
        page: form.page,
        edit: Some(true),
        of: super::data::Of::Development,
    };
    render_panel(&state, project_id, query, Some(&notice)).await
}
